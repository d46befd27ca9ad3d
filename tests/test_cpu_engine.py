"""The CPU reference engine: the real sample's truth after 30 layers, and the exact semantics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.engines import EngineUnavailable, get_engine
from spdnn.engines.cpu import CpuEngine, layer_step
from spdnn.io import cache
from spdnn.io.tsv import read_categories
from spdnn.validate import ValidationError, check_categories, truth_for_inputs

from .conftest import SAMPLE_LAYERS


def test_sample_reproduces_official_truth(sample_cache):
    weights = cache.load_weights(sample_cache["weights"])
    inputs = cache.load_inputs(sample_cache["inputs"])
    engine = CpuEngine()
    engine.prepare(weights, SAMPLE_LAYERS)
    result = engine.infer(inputs)
    truth = read_categories(lambda: open(sample_cache["truth"], "rb"), "truth")
    assert len(truth) == 7
    check_categories(result.categories, truth)
    # The sample's survival profile (measured once, docs/design.md): most rows die in 10 layers.
    assert result.active_rows[:3] == [546, 387, 191]
    assert result.active_rows[-1] == 7
    assert result.values.shape[0] == 7


def dense_reference(y0: np.ndarray, mats: list[np.ndarray], bias: float) -> np.ndarray:
    """The challenge's definition in float64 dense algebra, bias only on nonzeros of Z."""
    y = y0.astype(np.float64)
    for w in mats:
        z = y @ w
        z = np.where(z != 0, z + bias, 0.0)
        y = np.minimum(np.maximum(z, 0.0), 32.0)
    return y


def test_matches_dense_definition_with_clip():
    rng = np.random.default_rng(3)
    n = 64
    mats = []
    for _ in range(4):
        cols = np.stack([rng.choice(n, 32, replace=False) for _ in range(n)])
        # large weights so that the clip at 32 is reached
        mats.append(
            sp.csr_matrix(
                (rng.uniform(0.1, 4, n * 32).astype(np.float32), cols.ravel(), np.arange(0, n * 32 + 1, 32)),
                shape=(n, n),
            )
        )
    y0 = (rng.random((50, n)) < 0.2).astype(np.float32)
    y0[7] = 0  # an all-zero input stays dead
    weights = cache.Weights.from_matrices(mats, bias=-0.3)
    engine = CpuEngine()
    engine.prepare(weights, 4)
    result = engine.infer(sp.csr_matrix(y0))
    ref = dense_reference(y0, [m.toarray() for m in mats], -0.3)
    alive = np.flatnonzero(ref.any(axis=1))
    assert np.array_equal(result.categories, alive)
    assert 7 not in result.categories
    np.testing.assert_allclose(result.values.toarray(), ref[alive], rtol=1e-5)
    assert ref.max() == 32.0  # the clip was exercised


def test_layer_step_bias_only_on_structural_nonzeros():
    y = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))
    w = sp.csr_matrix(np.array([[0, 1], [1, 0]], dtype=np.float32))
    out = layer_step(y, w, 0.5).toarray()  # positive bias must not fill zeros
    assert out.tolist() == [[0, 1.5], [0, 0]]


def test_validation_names_first_differences():
    check_categories(np.array([3, 1]), np.array([1, 3]))
    with pytest.raises(
        ValidationError, match=r"computed but not in truth: \[3\]; first truth rows not computed: \[5\]"
    ):
        check_categories(np.array([0, 2]), np.array([0, 4]))
    assert truth_for_inputs(np.array([0, 5, 600]), 600).tolist() == [0, 5]


def test_engine_choice():
    assert get_engine("cpu").name == "cpu"
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("tpu")


def test_cuda_without_gpu_is_a_clear_stop():
    pytest.importorskip("numpy")
    try:
        import pycuda.driver  # noqa: F401

        pytest.skip("pycuda present: this test is for machines without it")
    except ImportError:
        pass
    with pytest.raises(EngineUnavailable, match="pycuda"):
        get_engine("cuda")
    assert get_engine("auto").name == "cpu"


def _same_result(a, b) -> None:
    assert a.active_rows == b.active_rows
    assert a.alive.keys() == b.alive.keys()
    for k in a.alive:
        assert np.array_equal(a.alive[k], b.alive[k]), k
    assert a.values.shape == b.values.shape
    assert np.array_equal(a.values.indptr, b.values.indptr) and np.array_equal(a.values.indices, b.values.indices)
    assert np.array_equal(a.values.data.view(np.uint32), b.values.data.view(np.uint32))  # bit for bit


@pytest.mark.parametrize("workers", [1, 2])
def test_carrying_saturated_rows_changes_nothing(workers):
    from spdnn.engines.cpu import reference, saturated
    from spdnn.generate import generate_inputs, generate_layers

    layers = list(generate_layers(256, 40, seed=1))
    inputs = generate_inputs(256, 1500, seed=1)
    plain = reference(lambda: layers, -0.3, inputs, counts=(5, 20), carry_saturated=False)
    carried = reference(lambda: layers, -0.3, inputs, counts=(5, 20), workers=workers)
    # the shortcut was taken: survivors are all 32 at the end, so they were carried
    assert saturated(plain.values).size > 0
    _same_result(plain, carried)


@pytest.mark.parametrize("scaled, survivors", [({12: 0.4, 13: 0.4, 25: 0.4}, 5), ({27: 0.004}, 0)])
def test_saturated_rows_rejoin_where_a_layer_does_not_keep_them(scaled, survivors):
    """A layer whose columns sum to less than 1 turns an all-32 row into another row (0.4:
    32 x 2 x 0.4 - 0.3 = 25.3) or kills it (0.004): the carried rows must come back as
    copies of that row and go on being computed, or die."""
    from spdnn.engines.cpu import reference, saturated
    from spdnn.generate import generate_inputs, generate_layers

    layers = list(generate_layers(256, 30, seed=2))
    inputs = generate_inputs(256, 1500, seed=2)
    before = reference(lambda: layers[:12], -0.3, inputs, carry_saturated=False)
    assert saturated(before.values).size >= 2  # some rows are carried when the change comes
    for k, factor in scaled.items():
        layers[k] = layers[k] * np.float32(factor)
    plain = reference(lambda: layers, -0.3, inputs, counts=(11, 12, 14, 26), carry_saturated=False)
    carried = reference(lambda: layers, -0.3, inputs, counts=(11, 12, 14, 26))
    assert plain.active_rows[-1] == survivors
    _same_result(plain, carried)


def test_saturated_finds_exactly_the_all_32_rows():
    from spdnn.engines.cpu import saturated

    dense = np.full((5, 8), 32.0, dtype=np.float32)
    dense[1, 3] = 31.5  # full but not all 32
    dense[2, 0] = 0.0  # not full
    dense[4] = 0.0  # empty
    assert saturated(sp.csr_matrix(dense)).tolist() == [0, 3]
    assert saturated(sp.csr_matrix((0, 8), dtype=np.float32)).size == 0
