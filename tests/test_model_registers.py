"""The engine's kernels' registers from ptxas (spdnn/model/registers.json) in the analysis."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from spdnn.model import load_hardware
from spdnn.model.analysis import Workload, analyse
from spdnn.model.nest import DIRECTIVE_DIR, load_nest
from spdnn.model.registers import KERNELS, _table, compile_counts, compiled_registers, directive_digest


def test_table_is_for_the_shipped_directive_files():
    """An edited directive file without a regenerated table fails here, not silently in the model
    (`python -m spdnn.model.registers --write`)."""
    table = _table()
    for kernel in KERNELS:
        text = (DIRECTIVE_DIR / f"{kernel}.m").read_text()
        assert table["directives"][kernel] == directive_digest(text), kernel
        assert len(table["kernels"][kernel]) == len(table["warps"]) == 32


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("warps", [2, 16])
def test_table_matches_the_compiler(warps):
    """A changed kernel without a regenerated table fails here."""
    counts = compile_counts(warps)
    table = _table()
    for kernel, function in KERNELS.items():
        assert table["kernels"][kernel][warps - 1] == counts[function], (kernel, warps)


def test_only_shipped_kernels_at_kw32_use_the_table():
    gather = load_nest("gather")
    regs, known = compiled_registers(gather, np.array([2.0, 8.0, 32.0, 8.5, 8.0]), np.array([32, 32, 32, 32, 16]))
    assert known.tolist() == [True, True, True, False, False]
    assert regs[:3].tolist() == [_table()["kernels"]["gather"][w - 1] for w in (2, 8, 32)]
    _, known = compiled_registers(dataclasses.replace(gather, kernel="gather_copy"), 8.0, 32.0)
    assert not known
    _, known = compiled_registers(load_nest("smem"), 8.0, 32.0)  # model only: no compiled kernel
    assert not known
    regs, known = compiled_registers(load_nest("fused"), 8.0, 32.0)
    assert known and float(regs) == _table()["kernels"]["fused"][7]


def test_compiled_registers_set_the_blocks_an_sm():
    """spdnn_layer at 8 warps: ptxas's 38 registers allow 6 blocks of 256 threads an SM (65,536
    registers; ncu read 6 on the H200), where the directives' estimate (62) allowed 4."""
    hw = load_hardware("h200")
    wl = Workload(n=60000.0, a=60000.0, win=4096.0, wout=4096.0, ucols=256.0, kw=32.0)
    shipped = analyse(load_nest("gather"), {"WARPS": 8.0}, wl, hw)
    estimate = analyse(dataclasses.replace(load_nest("gather"), kernel="gather_copy"), {"WARPS": 8.0}, wl, hw)
    assert float(shipped.regs) == 38 and float(shipped.bsm) == 6
    assert float(estimate.regs) == 62 and float(estimate.bsm) == 4
