"""benchmarks/population_reuse.py: the shares of a population's edge reads by distance (issue 19)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("population_reuse", ROOT / "benchmarks" / "population_reuse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_read_shares_add_up_and_grow_with_the_ring():
    res = _module().reuse(4, 1000, [0, 8, 64, 10**9])
    rows = res["by_ring"]
    for r in rows:  # every read is a shared input, on chip or far
        assert np.isclose(res["shared_input_reads"] + r["reads_on_chip"] + r["reads_far"], 1.0)
    assert rows[0]["reads_on_chip"] == 0.0
    on_chip = [r["reads_on_chip"] for r in rows]
    assert on_chip == sorted(on_chip) and on_chip[-1] > on_chip[0]
    written = [r["rows_written"] for r in rows]
    assert written == sorted(written, reverse=True)
    # a ring longer than any member: nothing is read from far, only the outputs are written
    assert rows[-1]["reads_far"] == 0.0
    assert rows[-1]["rows_written"] == 4 * 8
    assert rows[0]["rows_written"] <= res["rows"]
