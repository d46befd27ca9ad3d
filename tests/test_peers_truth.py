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


def test_truth_with_layers_generated_as_walked_is_the_truth_with_them_held(tmp_path):
    """keep_layers=False (what --truth-only does, so 65536 x 1920 fits): the layers are generated
    again by every worker as it walks them; the digest and the categories are the same as with
    the layers held in memory, and a truth stored either way is found by the other."""
    held = data.synthetic(1024, 18, 300, seed=2, truth_dir=None)
    walked = data.synthetic(1024, 18, 300, seed=2, truth_dir=tmp_path, keep_layers=False)
    assert walked.layers == [] and len(held.layers) == 18
    assert walked.extra["digest"] == held.extra["digest"]
    np.testing.assert_array_equal(walked.truth, held.truth)
    assert 0 < len(held.truth) < 300
    data.save_truth(walked, tmp_path, 2)
    again = data.synthetic(1024, 18, 300, seed=2, truth_dir=tmp_path)
    assert "computed earlier" in again.truth_source
    np.testing.assert_array_equal(again.truth, held.truth)


def test_a_callable_of_layers_needs_its_count():
    import pytest

    x = sp.csr_matrix(generate_inputs(1024, 10, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="layer_count"):
        data.reference_truth(lambda: generate_layers(1024, 6, 1), x, challenge.bias(1024))
