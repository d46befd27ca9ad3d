"""The cuda engine against the CPU reference: real sample and synthetic networks of several N.

GPU tests are marked `gpu` and skip cleanly without pycuda or a device. The layer plan (the
de-duplicated / merged transposed weights, spdnn.engines.layer_plan) is also checked on the CPU,
without a GPU; the check-point policy in tests/test_checkpoints.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn import challenge
from spdnn.engines import EngineUnavailable, get_engine
from spdnn.engines.cpu import CpuEngine
from spdnn.engines.layer_plan import fuse_bytes, plan_network, transposed_layer
from spdnn.io.cache import Weights, load_inputs, load_weights

from .conftest import require_cuda_device


def synthetic(neurons: int, layers: int, n_inputs: int, seed: int = 7):
    """Synthetic layers and inputs with the real survival profile (spdnn.generate)."""
    from spdnn.generate import generate_inputs, generate_layers

    mats = list(generate_layers(neurons, layers, seed))
    return Weights.from_matrices(mats), sp.csr_matrix(generate_inputs(neurons, n_inputs, seed), dtype=np.float32)


def random_network(neurons: int, layers: int, n_inputs: int, seed: int = 3):
    """A network with no duplicate columns, mixed-sign weights and a positive bias (general path)."""
    rng = np.random.default_rng(seed)
    mats = []
    for _ in range(layers):
        cols = np.argsort(rng.random((neurons, neurons)), axis=1)[:, : challenge.NNZ_PER_ROW]
        vals = rng.uniform(-0.05, 0.15, size=cols.shape).astype(np.float32)
        rows = np.repeat(np.arange(neurons), challenge.NNZ_PER_ROW)
        mats.append(sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(neurons, neurons)))
    x = sp.random(n_inputs, neurons, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    x.data[:] = 1.0
    return mats, x


def simulate_plan(weights: Weights, layers: int, x: sp.csr_matrix, merged: bool) -> np.ndarray:
    """What the kernels compute, in numpy float64, from the engine's layer plan."""
    y = x.toarray().astype(np.float64)
    in_map, n_in = None, weights.neurons
    for k in range(layers):
        cidx, cval, kw, umap = transposed_layer(weights.layer(k), in_map if merged else None, n_in)
        u = len(cidx) // kw
        z = np.einsum("ruk,uk->ru", y[:, cidx.reshape(u, kw)], cval.reshape(u, kw).astype(np.float64))
        z = np.where(z != 0, np.clip(z + weights.bias, 0, challenge.CLIP), 0)
        if merged:
            y, in_map, n_in = z, umap, u
        else:
            y = z[:, umap]
    return y[:, in_map] if merged else y


@pytest.mark.parametrize("merged", [False, True])
def test_layer_plan_matches_reference_on_cpu(sample_cache, merged):
    """The de-duplicated and merged layer plans compute the reference (numpy, no GPU needed)."""
    weights = load_weights(sample_cache["weights"], 12)
    x = load_inputs(sample_cache["inputs"], 200)
    ref = CpuEngine()
    ref.prepare(weights, 12)
    expect = ref.infer(x)
    got = simulate_plan(weights, 12, x, merged)
    alive = np.flatnonzero(np.any(got != 0, axis=1))
    np.testing.assert_array_equal(alive, expect.categories)
    np.testing.assert_allclose(got[alive], expect.values.toarray(), rtol=1e-5, atol=1e-6)


def test_transposed_layer_general():
    mats, _ = random_network(64, 1, 1)
    cidx, cval, kw, umap = transposed_layer(mats[0], None, 64)
    assert kw % 4 == 0 and kw >= 32 and len(np.unique(umap)) == 64
    dense = np.zeros((64, 64), dtype=np.float32)
    u = len(cidx) // kw
    for j in range(64):
        c = umap[j]
        np.add.at(dense[:, j], cidx.reshape(u, kw)[c], cval.reshape(u, kw)[c])
    np.testing.assert_array_equal(dense, mats[0].toarray())


@pytest.mark.parametrize("collide", [False, True])
def test_distinct_rows(monkeypatch, collide):
    """Distinct rows numbered by first appearance; with every hash equal, the exact fallback."""
    from spdnn.engines import layer_plan as engine

    if collide:
        monkeypatch.setattr(engine, "_HASH_MULTIPLIERS", np.zeros(64, dtype=np.uint64))
    key = np.random.default_rng(5).integers(0, 3, size=(2000, 7)).astype(np.int32)
    first, inverse = engine.distinct_rows(key)
    np.testing.assert_array_equal(key[first[inverse]], key)
    assert len(first) == len(np.unique(key, axis=0))
    assert np.all(np.diff(first) > 0) and np.all(inverse[first] == np.arange(len(first)))


def test_unavailable_without_pycuda():
    """Without pycuda the engine says so (EngineUnavailable), never falls back silently."""
    try:
        import pycuda  # noqa: F401
    except ImportError:
        with pytest.raises(EngineUnavailable, match="pycuda"):
            get_engine("cuda")
    else:
        pytest.skip("pycuda is installed here")


H100_SMEM_OPTIN = 232448  # shared memory one block may opt in to on an H100 / H200 (227 KB)


def test_plan_rules_on_cpu(sample_cache):
    """The rules the GPU tests rely on, without a GPU: the challenge sample merges (and fuses
    every layer but the 1024-wide first), a network without duplicate neurons stays dedup, a
    128-neuron general network fuses every layer, fuse_width 0 fuses nothing, and shared memory
    too small for the widest fused layer's segment fuses nothing either."""
    weights = load_weights(sample_cache["weights"])
    net = plan_network(weights, weights.n_layers, "auto", fuse_width=256, smem_optin=H100_SMEM_OPTIN)
    assert net.variant == "merged" and net.fused_layers == weights.n_layers - 1 and net.carry_from == 0
    assert net.fuse_wmax == 64 and net.max_width == 1024 and net.final_map is not None
    assert [p.win for p in net.layers[1:]] == net.widths[:-1]
    mats, _ = random_network(256, 3, 1)
    general = plan_network(
        Weights.from_matrices(mats, bias=0.01), 3, "auto", fuse_width=256, smem_optin=H100_SMEM_OPTIN
    )
    # full width (no duplicates): scatter segments, while the 256 distinct columns fit 16 warps'
    # registers and a layer's staged columns fit beside the tile (these columns are long: ~50)
    assert general.variant == "dedup" and general.final_map is None
    fits = [fuse_bytes(256, p.kw, True, "dedup", 256) <= H100_SMEM_OPTIN - 1024 for p in general.layers]
    assert [p.fused for p in general.layers] == fits
    unstaged = plan_network(Weights.from_matrices(mats, bias=0.01), 3, "auto", 256, H100_SMEM_OPTIN, False)
    assert unstaged.fused_layers == 3 and unstaged.fuse_wmax == 256 and unstaged.fuse_ucmax == 256
    assert (
        plan_network(Weights.from_matrices(mats, bias=0.01), 3, "dedup", 256, H100_SMEM_OPTIN, warps=8).fused_layers
        == 0
    )
    mats, _ = random_network(128, 8, 1)
    small = Weights.from_matrices(mats, bias=0.01)
    assert plan_network(small, 8, "merged", fuse_width=256, smem_optin=H100_SMEM_OPTIN).fused_layers == 8
    assert plan_network(small, 8, "merged", fuse_width=0, smem_optin=H100_SMEM_OPTIN).fused_layers == 0
    assert plan_network(small, 8, "merged", fuse_width=256, smem_optin=48 * 1024).fused_layers == 0
    assert (
        plan_network(small, 8, "merged", fuse_width=256, smem_optin=48 * 1024, stage_weights=False).fused_layers == 8
    )  # the tile alone fits
    assert plan_network(weights, 4, "dedup", carry_saturated=False).carry_from == 4


def test_scatter_fusion_rules_on_cpu(sample_cache):
    """Full-width (dedup) layers fuse by the variant's rule (up to 1024 wide): the challenge
    sample's 1024-wide layers with their 64 distinct columns all fuse, in one tile buffer plus
    two layers' staged columns; a width of 0, a block too small for the tile, or more distinct
    columns than the warps' registers hold fuse nothing."""
    weights = load_weights(sample_cache["weights"])
    layers = weights.n_layers
    net = plan_network(weights, layers, "dedup", fuse_width=None, smem_optin=H100_SMEM_OPTIN)
    assert net.fused_layers == layers and net.fuse_width == 1024
    assert net.fuse_wmax == 1024 and net.fuse_ucmax == 64
    # the tile buffer (128 KB), the layer's output lists (1024 + 65 ints, 16-byte rounded) and
    # two layers' 64 x 32 staged (index, value) pairs (32 KB)
    assert fuse_bytes(1024, 32, True, "dedup", 64) == 32 * 4 * 1024 + 4 * 1092 + 2 * 2 * 4 * 64 * 32
    merged = plan_network(weights, layers, "merged", fuse_width=None, smem_optin=H100_SMEM_OPTIN)
    assert merged.fuse_width == 256 and merged.fused_layers == layers - 1  # the merged rule is unchanged
    assert plan_network(weights, layers, "dedup", fuse_width=0, smem_optin=H100_SMEM_OPTIN).fused_layers == 0
    assert plan_network(weights, layers, "dedup", fuse_width=None, smem_optin=100 * 1024).fused_layers == 0
    assert plan_network(weights, layers, "dedup", None, H100_SMEM_OPTIN, warps=1).fused_layers == 0  # 32, 64 > 16


# ----------------------------------------------------------------------------- on the GPU


def test_keeps_saturated_agrees_with_the_reference_on_one_row():
    """The plan's saturation test (the kernel's arithmetic replayed in numpy) against the CPU
    reference's own (layer_step on one all-32 row), on challenge layers and on layers that
    fail it: weakened, mixed-sign, one column empty, a bias that just does or does not do."""
    from spdnn.engines.cpu import layer_step, saturated
    from spdnn.engines.layer_plan import carry_start, keeps_saturated
    from spdnn.generate import generate_layers

    layers = list(generate_layers(256, 6, seed=1))
    cases = [(w, -0.3) for w in layers] + [
        (layers[0] * np.float32(0.4), -0.3),
        (layers[1] * np.float32(0.5), 0.0),
        (layers[1] * np.float32(0.5), -1e-6),
        (layers[2] * np.float32(0.5), 1e-6),
    ]
    for w in random_network(64, 4, 1, seed=9)[0]:
        cases += [(w * np.float32(40), -0.5), (w, 0.3)]
    empty = layers[3].tolil()
    empty[:, 7] = 0
    cases.append((sp.csr_matrix(empty), -0.3))
    answers = []
    for w, bias in cases:
        cidx, cval, kw, _ = transposed_layer(w, None, w.shape[0])
        full = sp.csr_matrix(np.full((1, w.shape[0]), 32.0, dtype=np.float32))
        expect = saturated(layer_step(full, sp.csr_matrix(w, dtype=np.float32), np.float32(bias))).size == 1
        assert keeps_saturated(cval, kw, np.float32(bias)) == expect, (bias, kw)
        answers.append(expect)
    assert any(answers) and not all(answers)  # both outcomes were exercised
    assert carry_start([True] * 5) == 0 and carry_start([True, False, True, True]) == 2
    assert carry_start([True, True, False]) == 3 and carry_start([]) == 0


@pytest.fixture(scope="module")
def gpu():
    require_cuda_device()
    return True


def compare(weights: Weights, layers: int, x: sp.csr_matrix, **options):
    """Bit-identical to the CPU reference: categories, active rows after every layer, values.

    Both add each output's terms in ascending input order with one rounding per term (the
    reference sorts its rows' columns; the kernels replay every original edge, also in the
    merged variant), so near-threshold rows die at the same layer on both.
    """
    ref = CpuEngine()
    ref.prepare(weights, layers)
    expect = ref.infer(x)
    eng = get_engine("cuda", **options)
    eng.prepare(weights, layers)
    got = eng.infer(x)
    np.testing.assert_array_equal(got.categories, expect.categories)
    assert got.active_rows == expect.active_rows
    np.testing.assert_array_equal(got.values.toarray(), expect.values.toarray())
    return got


# the kernel paths: a kernel per layer at full width, per layer on the merged network, and
# the merged network's narrow layers in fused multi-layer segments (the default for N <= 4096)
PATHS = {
    "dedup": dict(variant="dedup", fuse_width=0),
    "dedup-fused": dict(variant="dedup"),
    "dedup-fused-unstaged": dict(variant="dedup", stage_weights=False),
    "merged": dict(variant="merged", fuse_width=0),
    "fused": dict(variant="merged"),
    "fused-unstaged": dict(variant="merged", stage_weights=False),
}


@pytest.mark.gpu
@pytest.mark.parametrize(
    "path", ["dedup", "dedup-fused", "dedup-fused-unstaged", "merged", "fused", "fused-unstaged", "auto"]
)
def test_sample_matches_cpu_and_truth(gpu, sample_cache, path):
    weights = load_weights(sample_cache["weights"])
    x = load_inputs(sample_cache["inputs"])
    got = compare(weights, weights.n_layers, x, **PATHS.get(path, {}))
    if path in ("fused", "fused-unstaged", "auto"):
        assert got.details["fused_layers"] == weights.n_layers - 1  # all but the first (1024 wide)
    if path.startswith("dedup-fused"):
        assert got.details["fused_layers"] == weights.n_layers  # full width: every layer
    truth = np.loadtxt(sample_cache["truth"], dtype=np.int64, ndmin=1) - 1
    truth = truth[truth < x.shape[0]]
    np.testing.assert_array_equal(got.categories, truth)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "neurons,layers,n_inputs",
    [(64, 24, 300), (256, 24, 300), (1024, 48, 600), (4096, 24, 400), (16384, 12, 200), (65536, 6, 64)],
)
@pytest.mark.parametrize("path", ["dedup", "dedup-fused", "merged", "fused", "fused-unstaged"])
def test_synthetic_matches_cpu(gpu, neurons, layers, n_inputs, path):
    weights, x = synthetic(neurons, layers, n_inputs)
    got = compare(weights, layers, x, **PATHS[path])
    if path.startswith("fused"):
        assert (got.details["fused_layers"] > 0) == (neurons <= 4096)
    if path == "dedup-fused":
        assert (got.details["fused_layers"] == layers) == (neurons <= 1024)


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dedup", "dedup-fused", "dedup-fused-unstaged", "merged", "fused", "fused-unstaged"])
@pytest.mark.parametrize("check_every", [1, 3, 64])
def test_batches_and_check_intervals(gpu, path, check_every):
    """Many small batches (rows staged on a second stream); checks at every layer, at odd
    intervals (fused segments of 1..3 layers whose flags rotate differently) and rarely (long
    segments in which tiles die at different layers)."""
    weights, x = synthetic(1024, 30, 500, seed=11)
    got = compare(weights, 30, x, batch_rows=96, check_every=check_every, **PATHS[path])
    assert got.details["batches"] == 6


def test_layer_smem_pad_caps_resident_blocks():
    """layer_blocks_per_sm's padding lets exactly k blocks of spdnn_layer share an SM's shared
    memory (H100/H200: 228 KB an SM, 227 KB a block at most), and refuses what no block can hold."""
    from spdnn.engines.kernel_args import LAYER_STATIC_SMEM, SMEM_RESERVED_PER_BLOCK, layer_smem_pad

    per_sm, optin = 233472, 232448
    for k in range(1, 33):
        block = layer_smem_pad(k, per_sm, optin) + LAYER_STATIC_SMEM + SMEM_RESERVED_PER_BLOCK
        assert k * block <= per_sm < (k + 1) * block, k
    with pytest.raises(ValueError, match="blocks_per_sm"):
        layer_smem_pad(0, per_sm, optin)
    with pytest.raises(ValueError, match="at least 2"):
        layer_smem_pad(1, per_sm, 48 * 1024)  # a GPU whose blocks may have 48 KB only


@pytest.mark.gpu
@pytest.mark.parametrize("blocks", [1, 4])
def test_layer_blocks_per_sm_same_results(gpu, blocks):
    """The padding only changes how many blocks share an SM: results bit for bit the reference's."""
    weights, x = synthetic(4096, 12, 400)
    got = compare(weights, 12, x, layer_blocks_per_sm=blocks, **PATHS["dedup"])
    assert got.details["layer_blocks_per_sm"] == blocks and not got.details["fused_layers"]  # all spdnn_layer


@pytest.mark.gpu
def test_inputs_unsorted_with_duplicates(gpu):
    """The input load needs ascending, distinct columns: the engine canonicalises a copy."""
    weights, x = synthetic(1024, 6, 200)
    rng = np.random.default_rng(0)
    indices, data = [], []
    for r in range(x.shape[0]):  # every entry twice, half the value each (exact), shuffled
        lo, hi = x.indptr[r], x.indptr[r + 1]
        order = rng.permutation(2 * (hi - lo))
        indices.append(np.tile(x.indices[lo:hi], 2)[order])
        data.append(np.tile(x.data[lo:hi] / 2, 2)[order])
    messy = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), 2 * x.indptr), shape=x.shape)
    assert not messy.has_canonical_format and messy.nnz == 2 * x.nnz
    before = (messy.indices.copy(), messy.data.copy())
    got = compare(weights, 6, x)
    eng = get_engine("cuda")
    eng.prepare(weights, 6)
    again = eng.infer(messy)
    np.testing.assert_array_equal(again.categories, got.categories)
    np.testing.assert_array_equal(again.values.toarray(), got.values.toarray())
    # the caller's matrix is left as it was
    np.testing.assert_array_equal(messy.indices, before[0])
    np.testing.assert_array_equal(messy.data, before[1])


@pytest.mark.gpu
def test_fused_general_network_positive_bias(gpu):
    """Every layer fused, the first one too (N = 128: the tile and two layers' columns, up to
    ~56 per column here, fit in shared memory): mixed-sign weights, b > 0."""
    mats, x = random_network(128, 8, 300)
    weights = Weights.from_matrices(mats, bias=0.01)
    got = compare(weights, 8, x, variant="merged", check_every=3)
    assert got.details["fused_layers"] == 8
    # the same network at full width: scatter segments (128 distinct columns in 16 warps' registers)
    got = compare(weights, 8, x, variant="dedup", check_every=3)
    assert got.details["fused_layers"] == 8 and got.details["variant"] == "dedup"


@pytest.mark.gpu
def test_fewer_warps_than_the_scatter_plan_is_an_error(gpu):
    """Full-width fused layers give each warp at most SCATTER_REGS columns for prepare's warps:
    fewer warps afterwards would leave columns uncomputed, so infer refuses."""
    weights, x = synthetic(1024, 6, 64)
    eng = get_engine("cuda", variant="dedup")
    eng.prepare(weights, 6)
    eng.warps = 2  # 64 distinct columns > 2 x 16
    with pytest.raises(ValueError, match="call prepare"):
        eng.infer(x)


@pytest.mark.gpu
def test_fuse_width_beyond_shared_memory_is_an_error(gpu):
    with pytest.raises(ValueError, match="fuse_width"):
        get_engine("cuda", fuse_width=1 << 20)


@pytest.mark.gpu
def test_general_network_positive_bias(gpu):
    """No duplicate columns, mixed-sign weights, b > 0: the bias goes on the nonzeros of Z only."""
    mats, x = random_network(256, 8, 300)
    weights = Weights.from_matrices(mats, bias=0.01)
    got = compare(weights, 8, x, variant="auto")
    assert got.details["variant"] == "dedup"


@pytest.mark.gpu
def test_batch_too_large_for_memory_is_shrunk(gpu, caplog):
    """A batch that cannot be allocated is halved until it fits, and the log says so."""
    import logging

    weights, x = synthetic(1024, 12, 500)
    with caplog.at_level(logging.WARNING, logger="spdnn.engines.cuda"):
        got = compare(weights, 12, x, batch_rows=200_000_000)  # asks for ~1.6 TB of features
    assert got.details["batch_rows"] < 200_000_000
    assert "a batch of 200000000 rows does not fit in GPU memory" in caplog.text and "shrinking it to" in caplog.text


@pytest.mark.gpu
def test_gpu_that_does_not_exist(gpu):
    with pytest.raises(EngineUnavailable, match="GPU 99 requested"):
        get_engine("cuda", device=99)


@pytest.mark.gpu
def test_unknown_engine_option_is_an_error(gpu):
    with pytest.raises(TypeError, match="varient"):
        get_engine("cuda", varient="merged")


@pytest.mark.gpu
def test_kernel_fault_names_kernel_and_configuration(gpu, tmp_path):
    """An illegal address inside the layer kernel (a corrupted weight pointer) is reported with the
    kernel, layer and configuration. In a child process: the fault poisons its CUDA context."""
    import subprocess
    import sys

    script = tmp_path / "fault.py"
    script.write_text(
        "import numpy as np\n"
        "from tests.test_cuda import synthetic\n"
        "from spdnn.engines import get_engine\n"
        "w, x = synthetic(256, 4, 100)\n"
        "e = get_engine('cuda', variant='dedup', fuse_width=0)\n"
        "e.prepare(w, 4)\n"
        "e._layers[0].cidx = np.intp(16)  # the null page: nothing is mapped there (layer 0 always runs)\n"
        "try:\n"
        "    e.infer(x)\n"
        "    print('NO ERROR')\n"
        "except RuntimeError as err:\n"
        "    print('ERROR:', err)\n"
    )
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=300, env=env)
    # launches are asynchronous: the error surfaces at the next synchronisation, so the message
    # names the last kernel launched by then ("at or after"), with the engine's configuration
    assert re.search(r"ERROR: CUDA error at or after kernel spdnn_layer for layer \d+ \(KW \d+", run.stdout), (
        run.stdout + run.stderr
    )
    from spdnn.engines.cuda import WARPS

    assert "variant dedup" in run.stdout and f"warps {WARPS}" in run.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dedup", "dedup-fused", "merged", "fused", "fused-unstaged"])
def test_saturated_rows_are_carried(gpu, path):
    """Rows that are 32 everywhere leave the computation once every later layer keeps them so,
    with the same categories, counts and values; without it, nothing is carried."""
    weights, x = synthetic(1024, 120, 3000, seed=1)
    got = compare(weights, 120, x, **PATHS[path])
    assert got.details["carry_from"] == 0 and got.details["carried_rows"] > 0
    plain = compare(weights, 120, x, carry_saturated=False, **PATHS[path])
    assert plain.details["carried_rows"] == 0 and plain.details["carry_from"] == 120


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dedup", "dedup-fused", "merged", "fused"])
@pytest.mark.parametrize("check_every", [1, 5])
def test_saturated_rows_carried_only_after_the_last_layer_that_breaks_them(gpu, path, check_every):
    from spdnn.generate import generate_inputs, generate_layers

    mats = list(generate_layers(1024, 60, seed=3))
    mats[25] = mats[25] * np.float32(0.4)  # all 32 -> 25.3: saturated rows would change here
    weights = Weights.from_matrices(mats)
    x = sp.csr_matrix(generate_inputs(1024, 2000, seed=3), dtype=np.float32)
    got = compare(weights, 60, x, batch_rows=704, check_every=check_every, **PATHS[path])
    assert got.details["carry_from"] == 26
    if check_every == 1:  # (at sparser check points too few rows saturate at once to be worth a stop)
        assert got.details["carried_rows"] > 0
