"""The peers benchmark's truth: computed in passes of rows, it is the truth computed at once."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from spdnn import challenge
from spdnn.generate import generate_inputs, generate_layers

from .conftest import benchmark_modules

(data,) = benchmark_modules("peers", "data")


def test_truth_in_passes_of_rows_is_the_truth_at_once(monkeypatch):
    """Rows are independent: passes of 37 rows (an odd size, so the last pass is short) give the
    same categories after every layer asked for, offset back to the rows' own numbers."""
    n, layers = 1024, 24
    mats = list(generate_layers(n, layers, 1))
    x = sp.csr_matrix(generate_inputs(n, 400, 1), dtype=np.float32)
    at = [4, 12, layers]
    whole = data.reference_truth(mats, x, challenge.bias(n), at)
    monkeypatch.setattr(data, "TRUTH_CHUNK_ROWS", 37)
    passes = data.reference_truth(mats, x, challenge.bias(n), at)
    for k in at:
        np.testing.assert_array_equal(passes[k], whole[k])
    assert len(whole[4]) > len(whole[layers]) > 0  # rows die on the way, some survive: not trivial
