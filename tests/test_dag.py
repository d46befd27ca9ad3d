"""spdnn.dag: format, checks naming the nodes, levelisation, engines, generators, challenge equivalence.

CPU tests are fast. GPU tests are marked `gpu` and skip without pycuda or a GPU; the warp
kernel's index math is also emulated in numpy (no GPU needed), and the .cu file is compiled
for sm_90 when nvcc is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.dag import cache, fileformat
from spdnn.dag.cpu import SequentialEngine, VectorisedEngine
from spdnn.dag.cuda import KERNEL_FILE, warp_plan
from spdnn.dag.generate import challenge_dag, evolved, generate, pruned_layered, random_inputs
from spdnn.dag.levels import levelise, levels_by_walk
from spdnn.dag.network import (
    HIDDEN,
    IDENTITY,
    INPUT,
    OUTPUT,
    RELU,
    RELU_CLIP,
    RELU_CLIP1,
    SIGMOID,
    TANH,
    DagSpec,
    activate,
)
from spdnn.dag.validate import DagValidationError, check_levels, compare_outputs
from spdnn.io.checksum import checksum_path, checksum_problem
from spdnn.io.errors import DataError


def write(tmp_path: Path, edges: str, nodes: str) -> tuple[Path, Path]:
    e, n = tmp_path / "net.edges.tsv", tmp_path / "net.nodes.tsv"
    e.write_text(edges)
    n.write_text(nodes)
    return e, n


# A small hand-made network: inputs 10, 20; 30 = relu(10 + 20), 40 = tanh(30 - 10), 50 (output) = 30 + 2*40,
# 60 (output, bias only) = sigmoid(0.5). Levels: 10, 20 -> 0; 30 -> 1; 40 -> 2; 50 -> 3; 60 -> 1.
HAND_EDGES = "10\t30\t1\n20\t30\t1\n30\t40\t1\n10\t40\t-1\n30\t50\t1\n40\t50\t2\n"
HAND_NODES = (
    "50\t0\tidentity\toutput\n10\t0\tidentity\tinput\n20\t0\tidentity\tinput\n30\t0\trelu\thidden\n"
    "40\t0\ttanh\thidden\n60\t0.5\tsigmoid\toutput\n"
)


def hand_expected(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    n30 = np.maximum(a + b, 0)
    n40 = np.tanh(n30 - a)
    return np.stack([n30 + 2 * n40, np.full_like(a, 1 / (1 + np.exp(-0.5)))], axis=1)


# ----------------------------------------------------------------------------- format


def test_hand_network_levels_and_values(tmp_path):
    spec = fileformat.read_spec(*write(tmp_path, HAND_EDGES, HAND_NODES))
    net = levelise(spec)
    assert dict(zip(net.ids.tolist(), net.level.tolist())) == {10: 0, 20: 0, 30: 1, 60: 1, 40: 2, 50: 3}
    assert net.ids.tolist() == [10, 20, 30, 60, 40, 50]  # level, then id
    assert net.level_ptr.tolist() == [0, 2, 4, 5, 6]
    assert net.ids[net.output_rows].tolist() == [50, 60]
    # incoming edges of each node are contiguous, sources ascending rows of earlier groups
    for r in range(net.n_nodes):
        s = net.sources[net.indptr[r] : net.indptr[r + 1]]
        assert np.all(np.diff(s) > 0) and np.all(net.level[s] < net.level[r])
    assert levels_by_walk(spec) == dict(zip(net.ids.tolist(), net.level.tolist()))
    x = np.array([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]], dtype=np.float32)
    for engine in (SequentialEngine(), VectorisedEngine()):
        engine.prepare(net)
        np.testing.assert_allclose(engine.infer(x).outputs, hand_expected(x), rtol=1e-6, atol=1e-6)


def test_round_trip_tsv_and_cache(tmp_path):
    spec = evolved(3000, seed=4)
    edges, nodes = tmp_path / "e.edges.tsv.gz", tmp_path / "e.nodes.tsv"
    fileformat.write_spec(spec, edges, nodes)
    back = fileformat.read_spec(edges, nodes)
    for field in ("ids", "bias", "activation", "role", "source", "target", "weight"):
        np.testing.assert_array_equal(getattr(back, field), getattr(spec, field))  # bit-exact floats
    net = levelise(back)
    cache.write_cache(net, tmp_path / "e.arrow", note="test")
    loaded = cache.read_cache(tmp_path / "e.arrow")
    for field in ("ids", "bias", "activation", "role", "level", "level_ptr", "indptr", "sources", "weights"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(net, field))
    assert loaded.meta["note"] == "test"


def test_cache_rejects_other_files(tmp_path):
    bad = tmp_path / "x.arrow"
    bad.write_bytes(b"not arrow")
    with pytest.raises(DataError, match="x.arrow: not an Arrow IPC file"):
        cache.read_cache(bad, verify=False)


def _cached_network(tmp_path: Path) -> Path:
    path = tmp_path / "e.dag.arrow"
    cache.write_cache(levelise(evolved(2000, seed=5)), path)
    return path


def test_dag_cache_writes_checksum_file(tmp_path):
    path = _cached_network(tmp_path)
    assert checksum_problem(path) is None
    assert checksum_path(path).exists()


def test_damaged_dag_cache_is_detected(tmp_path):
    # Same size, one byte of the edge weights flipped: only the sha256 can tell
    path = _cached_network(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"e\.dag\.arrow: damaged cache file \(content sha256 .* differs"):
        cache.read_cache(path)
    assert not checksum_path(path).exists()  # never trusted again: the workflow rebuilds it
    with pytest.raises(DataError, match="no checksum file beside it"):
        cache.read_cache(path)


def test_truncated_dag_cache_is_detected(tmp_path):
    path = _cached_network(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"e\.dag\.arrow: damaged cache file \(size \d+ differs"):
        cache.read_cache(path)


def test_dag_cache_without_checksum_file_is_refused(tmp_path):
    path = _cached_network(tmp_path)
    checksum_path(path).unlink()  # a run killed between the cache's rename and its checksum file's
    with pytest.raises(DataError, match=r"e\.dag\.arrow: damaged cache file \(no checksum file"):
        cache.read_cache(path)
    assert cache.read_cache(path, verify=False).n_nodes > 0  # the data itself was whole


# ----------------------------------------------------------------------------- errors name the nodes


@pytest.mark.parametrize(
    "edges, nodes, pattern",
    [
        (
            "1\t2\t1\n2\t3\t1\n3\t2\t1\n",
            "1\t0\trelu\tinput\n2\t0\trelu\thidden\n3\t0\trelu\toutput\n",
            r"edges.tsv:2: cycle: (2 -> 3 -> 2|3 -> 2 -> 3) .*lines 2, 3",
        ),
        ("1\t2\t1\n2\t2\t1\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:2: cycle: 2 -> 2"),
        (
            "1\t2\t1\n1\t9\t1\n",
            "1\t0\trelu\tinput\n2\t0\trelu\toutput\n",
            r"edges.tsv:2: dangling edge target: node 9 \(line 2\)",
        ),
        ("7\t2\t1\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:1: dangling edge source: node 7"),
        (
            "1\t2\t1\n3\t2\t1\n1\t2\t0.5\n",
            "1\t0\trelu\tinput\n2\t0\trelu\toutput\n3\t0\trelu\tinput\n",
            r"edges.tsv:3: duplicate edge: 1 -> 2 \(lines 1 and 3\)",
        ),
        (
            "1\t2\t1\n2\t3\t1\n",
            "1\t0\trelu\tinput\n2\t0\trelu\tinput\n3\t0\trelu\toutput\n",
            r"edges.tsv:1: input node with incoming edge: 1 -> 2 \(line 1\)",
        ),
        (
            "1\t2\t1\n",
            "1\t0\trelu\tinput\n2\t0\trelu\toutput\n1\t0\trelu\thidden\n",
            r"nodes.tsv:3: duplicate node id: 1 \(lines 1 and 3\)",
        ),
        ("1\t2\t1\n", "1\t0\tsoftmax\tinput\n2\t0\trelu\toutput\n", r"nodes.tsv:1: activation 'softmax' is not one of"),
        ("1\t2\t1\n", "1\t0\trelu\tinput\n2\t0\trelu\tbogus\n", r"nodes.tsv:2: role 'bogus' is not one of"),
        ("1\t2\tx\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:1: weight 'x' is not a number"),
        (
            "1\t2\t1\n\n",
            "1\t0\trelu\tinput\n2\t0\trelu\toutput\n",
            r"edges.tsv:2: (source is empty|expected 3 tab-separated fields)",
        ),
        # the shared parser quotes a field as written (spdnn.io.tsv), as for the challenge's files
        ("1\t2\tinf\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:1: weight 'inf' is not finite"),
        ("1\t2\t1e39\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:1: weight '1e39' overflows float32"),
        ("1\t2\t1\n", "1\tnan\trelu\tinput\n2\t0\trelu\toutput\n", r"nodes.tsv:1: bias 'nan' is not finite"),
        ("1\t2\t1\n", "1\t0\trelu\tinput\n0\t0\trelu\toutput\n", r"nodes.tsv:2: node id 0 is not a positive"),
        (
            "1\t2\t1\n1\t" + "2" * 300 + "\t1\n",
            "1\t0\trelu\tinput\n2\t0\trelu\toutput\n",
            r"edges.tsv:2: line longer than 256 bytes",
        ),
        ("0\t2\t1\n", "1\t0\trelu\tinput\n2\t0\trelu\toutput\n", r"edges.tsv:1: source id 0 is not a positive"),
        ("1\t2\t1\n", "1\t0\trelu\thidden\n2\t0\trelu\toutput\n", r"nodes.tsv: no node has role input"),
    ],
)
def test_errors_name_nodes_and_lines(tmp_path, edges, nodes, pattern):
    with pytest.raises(DataError, match=pattern):
        levelise(fileformat.read_spec(*write(tmp_path, edges, nodes)))


def test_cycle_behind_long_chain_names_only_cycle_nodes():
    # inputs 1; chain 2..200; cycle 150 -> 151 -> 150 closed by an extra edge; 201 hangs behind it
    n = 201
    src = list(range(1, 200)) + [151, 151]
    tgt = list(range(2, 201)) + [150, 201]
    ids = np.arange(1, n + 1)
    role = np.full(n, HIDDEN, np.int8)
    role[0] = INPUT
    spec = DagSpec(
        ids,
        np.zeros(n, np.float32),
        np.zeros(n, np.int8),
        role,
        np.array(src),
        np.array(tgt),
        np.ones(len(src), np.float32),
        edges_name="e",
    )
    with pytest.raises(DataError, match=r"cycle: (150 -> 151|151 -> 150) -> (150|151) .*52 nodes lie on or behind"):
        levelise(spec)


# ----------------------------------------------------------------------------- levelisation


def test_levels_longest_path_and_bias_only_nodes():
    # 1, 2 inputs; 3 bias-only (level 1); 4 <- 1, 3 (level 2); 5 <- 1 (level 1); 6 <- 5, 4, 2 (level 3)
    edges = np.array([[1, 4], [3, 4], [1, 5], [5, 6], [4, 6], [2, 6]])
    ids = np.arange(1, 7)
    role = np.array([INPUT, INPUT, HIDDEN, HIDDEN, HIDDEN, OUTPUT], np.int8)
    spec = DagSpec(
        ids, np.zeros(6, np.float32), np.zeros(6, np.int8), role, edges[:, 0], edges[:, 1], np.ones(6, np.float32)
    )
    net = levelise(spec)
    assert dict(zip(net.ids.tolist(), net.level.tolist())) == {1: 0, 2: 0, 3: 1, 5: 1, 4: 2, 6: 3}
    assert check_levels(spec, net) == 4


@pytest.mark.parametrize("kind", ["pruned", "evolved"])
def test_levelise_matches_walk_on_generated(kind):
    spec = generate(kind, 20_000, seed=5)
    net = levelise(spec)
    assert check_levels(spec, net) == net.n_levels
    # groups are contiguous and every edge goes from an earlier group
    lv = net.level
    assert np.all(np.diff(lv) >= 0)
    tgt_rows = np.repeat(np.arange(net.n_nodes), np.diff(net.indptr))
    assert np.all(lv[net.sources] < lv[tgt_rows])
    assert np.all(net.role[: net.n_inputs] == INPUT) and not np.any(net.role[net.n_inputs :] == INPUT)


# ----------------------------------------------------------------------------- engines


@pytest.mark.parametrize("kind, batch", [("pruned", 1), ("pruned", 37), ("evolved", 1), ("evolved", 64)])
def test_sequential_equals_vectorised(kind, batch):
    net = levelise(generate(kind, 30_000, seed=2))
    x = random_inputs(net.n_inputs, batch, seed=batch)
    outs = []
    for engine in (SequentialEngine(), VectorisedEngine()):
        engine.prepare(net)
        result = engine.infer(sp.csr_matrix(x) if batch == 37 else x)
        assert result.outputs.shape == (batch, net.n_outputs)
        outs.append(result.outputs)
    comparison = compare_outputs(outs[1], outs[0])
    assert comparison.passed, comparison


def test_cpu_engines_take_no_time_budget():
    """No extrapolation: a CPU run is timed in full or not at all (an unknown option is refused)."""
    with pytest.raises(TypeError):
        SequentialEngine(max_seconds=1.0)
    with pytest.raises(TypeError):
        VectorisedEngine(max_seconds=1.0)


def test_activations_match_definitions():
    z = np.linspace(-40, 40, 101, dtype=np.float32)
    assert np.array_equal(activate(z.copy(), RELU_CLIP), np.clip(z, 0, 32))
    assert np.array_equal(activate(z.copy(), RELU), np.maximum(z, 0))
    np.testing.assert_allclose(activate(z.copy(), SIGMOID), 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(activate(z.copy(), TANH), np.tanh(z), rtol=1e-6)
    assert np.array_equal(activate(z.copy(), RELU_CLIP1), np.clip(z, 0, 1))
    assert np.array_equal(activate(z.copy(), IDENTITY), z)


def test_compare_outputs_flags_real_differences():
    ref = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    assert compare_outputs(ref * (1 + 1e-6), ref).passed
    bad = ref.copy()
    bad[3, 2] += 0.1
    assert not compare_outputs(bad, ref).passed


def test_challenge_network_as_dag_equals_layered_engine():
    """generate_layers + generate_inputs (N = 256, 12 layers) as a DAG: same categories, same values."""
    from spdnn.engines.cpu import CpuEngine
    from spdnn.generate import generate_inputs, generate_layers
    from spdnn.io.cache import Weights

    n, layers = 256, 12
    mats = list(generate_layers(n, layers, seed=3))
    x = sp.csr_matrix(generate_inputs(n, 300, seed=3), dtype=np.float32)
    bias = -0.2  # challenge.bias has no N = 256; at -0.2 about 10% of these inputs survive 12 layers
    weights = Weights.from_matrices(mats, bias=bias)
    layered = CpuEngine()
    layered.prepare(weights, layers)
    truth = layered.infer(x)
    net = levelise(challenge_dag(mats, bias))
    assert net.n_levels == layers + 1 and net.n_edges == 32 * n * layers
    for engine in (SequentialEngine(), VectorisedEngine()):
        engine.prepare(net)
        out = engine.infer(x).outputs
        categories = np.flatnonzero(np.any(out != 0, axis=1))
        np.testing.assert_array_equal(categories, truth.categories)
        assert 0 < categories.size < x.shape[0]
        dense = np.zeros_like(out)
        dense[truth.categories] = truth.values.toarray()
        # float32 sums in another order, through 12 layers: within 1e-4 relative (compare_outputs' rule)
        comparison = compare_outputs(out, dense)
        assert comparison.passed and comparison.max_abs_error < 1e-3, comparison


# ----------------------------------------------------------------------------- generators


def test_generators_properties():
    for edges in (10_000, 200_000):
        p = pruned_layered(edges, seed=1)
        assert 0.75 * edges <= p.n_edges <= 1.05 * edges
        net = levelise(p)
        assert np.all(net.activation[net.role == HIDDEN] == RELU)
        assert np.all(net.activation[net.role == OUTPUT] == IDENTITY)
        # skip connections: some edges jump over a level
        tgt_rows = np.repeat(np.arange(net.n_nodes), np.diff(net.indptr))
        jumps = net.level[tgt_rows] - net.level[net.sources]
        assert 0.05 < np.mean(jumps > 1) < 0.3
        e = evolved(edges, seed=1)
        assert 0.6 * edges <= e.n_edges <= 1.1 * edges
        enet = levelise(e)
        indeg = np.diff(enet.indptr)[enet.n_inputs :]
        assert indeg.max() > 10 * np.median(indeg)  # heavy-tailed in-degrees (hubs)
        assert len(np.unique(enet.activation[enet.role == HIDDEN])) == 4
        assert not np.array_equal(np.sort(e.ids), e.ids)  # ids shuffled
        assert enet.n_levels > net.n_levels
    a, b = pruned_layered(10_000, seed=7), pruned_layered(10_000, seed=7)
    assert np.array_equal(a.source, b.source) and np.array_equal(a.weight, b.weight)


def test_cli_generate_convert_run(tmp_path):
    from spdnn.cli import main

    prefix = tmp_path / "net"
    assert main(["dag", "generate", "--kind", "pruned", "--edges", "5000", "--prefix", str(prefix)]) == 0
    arrow = tmp_path / "net.arrow"
    assert main(["dag", "convert", f"{prefix}.edges.tsv", f"{prefix}.nodes.tsv", str(arrow)]) == 0
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "dag",
                "run",
                "--cache",
                str(arrow),
                "--batch",
                "8",
                "--engine",
                "vectorised",
                "--edges",
                f"{prefix}.edges.tsv",
                "--nodes",
                f"{prefix}.nodes.tsv",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert main(["dag", "table", str(out), "--markdown", str(tmp_path / "t.md")]) == 0
    assert "vectorised" in (tmp_path / "t.md").read_text()
    (tmp_path / "bad.edges.tsv").write_text("1\t1\t1\n")
    assert (
        main(["dag", "convert", str(tmp_path / "bad.edges.tsv"), f"{prefix}.nodes.tsv", str(tmp_path / "b.arrow")]) == 2
    )


# ----------------------------------------------------------------------------- GPU kernels


def emulate_warp_kernel(net, x: np.ndarray) -> np.ndarray:
    """The warp kernel's launch plan and index math run in numpy (lane by lane), no GPU needed,
    on the engine's value slots (rows reused after their last reader, as on the GPU)."""
    from spdnn.dag.liveness import plan_values
    from spdnn.dag.network import activate as act

    slots = plan_values(net)

    batch = x.shape[0]
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    ld = -(-batch // plan.tile) * plan.tile
    values = np.full((slots.n_slots, ld), np.nan, np.float32)
    values[: net.n_inputs] = 0
    values[: net.n_inputs, :batch] = x.T
    writes = np.zeros((net.n_nodes, ld), int)
    for s in plan.segments:
        log_tpn = plan.log_lb + s.log_le
        tpn, le, per_warp, warps = 1 << log_tpn, 1 << s.log_le, 32 >> log_tpn, s.block >> 5
        lanes = np.arange(32)
        lig = lanes & (tpn - 1)
        b_lane, e_lane, grp = lig & ((1 << plan.log_lb) - 1), lig >> plan.log_lb, lanes >> log_tpn
        for tile in range(ld // plan.tile):
            cols = (tile * (1 << plan.log_lb) + b_lane) * plan.vec
            for level in range(s.l0, s.l1):
                lo, hi = net.level_ptr[level], net.level_ptr[level + 1]
                for warp in range(s.grid_x * warps):
                    for base in range(lo + warp * per_warp, hi, s.grid_x * warps * per_warp):
                        acc = np.zeros((32, plan.vec), np.float32)
                        for lane in range(32):
                            node = base + grp[lane]
                            if node < hi:
                                for e in range(net.indptr[node] + e_lane[lane], net.indptr[node + 1], le):
                                    acc[lane] += (
                                        net.weights[e] * values[slots.src_slot[e], cols[lane] : cols[lane] + plan.vec]
                                    )
                        for lane in range(32):
                            node = base + grp[lane]
                            if node < hi and e_lane[lane] == 0:
                                total = acc[(lanes >> log_tpn == grp[lane]) & (b_lane == b_lane[lane])].sum(axis=0)
                                values[slots.slot[node], cols[lane] : cols[lane] + plan.vec] = act(
                                    total + net.bias[node], int(net.activation[node])
                                )
                                writes[node, cols[lane] : cols[lane] + plan.vec] += 1
    assert np.all(writes[net.n_inputs :] == 1), "every (node, column) written exactly once"
    assert slots.n_slots < net.n_nodes
    return values[slots.slot[net.output_rows], :batch].T


@pytest.mark.parametrize("batch", [1, 5, 70])
def test_warp_kernel_index_math_emulated(batch):
    net = levelise(evolved(1500, seed=3))
    x = random_inputs(net.n_inputs, batch, seed=1)
    ref = SequentialEngine()
    ref.prepare(net)
    assert compare_outputs(emulate_warp_kernel(net, x), ref.infer(x).outputs).passed


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize(
    "defines",
    [
        [],
        ["-DLANE_WARPS=1"],
        ["-DLANE_WARPS=8", "-DLANE_LEAVE_OUT=7"],
        ["-DLANE_STEP_BLOCK=4"],
        ["-DLANE_STEP_BLOCK=8"],
        ["-DLANE_STEP_BLOCK=2"],
    ],
)
def test_dag_kernels_compile_sm90(tmp_path, defines):
    """The default build, and dag_lane's other builds (warps a block, the diagnostic ones)."""
    out = tmp_path / "dag.cubin"
    run = subprocess.run(
        ["nvcc", "-arch=sm_90", "-cubin", "-O3", *defines, "-o", str(out), str(KERNEL_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    cubin = out.read_bytes()
    kernels = ("dag_thread", "dag_warp1", "dag_warp4", "dag_walk1", "dag_walk4", "dag_lane", "dag_gather")
    for kernel in (*kernels, "dag_population1", "dag_population4"):
        assert kernel.encode() in cubin, kernel


def _gpu_engine(name: str):
    pytest.importorskip("pycuda")
    from spdnn.dag.engine import EngineUnavailable
    from spdnn.dag.registry import get_dag_engine

    try:
        return get_dag_engine(name)
    except EngineUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")


@pytest.mark.gpu
@pytest.mark.parametrize("engine_name", ["cuda-warp", "cuda-thread", "cupy"])
@pytest.mark.parametrize(
    "kind, edges, batch",
    [
        ("evolved", 20_000, 1),
        ("evolved", 50_000, 300),
        ("pruned", 50_000, 1),
        ("pruned", 20_000, 33),
        ("pruned", 200_000, 1000),
    ],
)
def test_gpu_engines_match_reference(engine_name, kind, edges, batch):
    if engine_name == "cupy":
        pytest.importorskip("cupy")
    engine = _gpu_engine(engine_name)
    net = levelise(generate(kind, edges, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=edges)
    ref = VectorisedEngine()
    ref.prepare(net)
    engine.prepare(net)
    out = engine.infer(x)
    comparison = compare_outputs(out.outputs, ref.infer(x).outputs)
    assert comparison.passed, comparison
    assert out.seconds > 0


@pytest.mark.gpu
def test_gpu_chunked_batch_and_challenge_categories():
    """Column chunks (forced small) give the same result; the challenge DAG gives the layered categories."""
    from spdnn.engines.cpu import CpuEngine
    from spdnn.generate import generate_inputs, generate_layers
    from spdnn.io.cache import Weights

    engine = _gpu_engine("cuda-warp")
    engine.max_columns = 128
    mats = list(generate_layers(256, 12, seed=3))
    weights = Weights.from_matrices(mats, bias=-0.2)
    layered = CpuEngine()
    layered.prepare(weights, 12)
    x = sp.csr_matrix(generate_inputs(256, 500, seed=3), dtype=np.float32)
    truth = layered.infer(x)
    engine.prepare(levelise(challenge_dag(mats, -0.2)))
    result = engine.infer(x)
    assert result.details["chunk_columns"] == 128 and truth.categories.size > 0
    np.testing.assert_array_equal(np.flatnonzero(np.any(result.outputs != 0, axis=1)), truth.categories)


def test_bad_engine_name():
    from spdnn.dag.registry import get_dag_engine

    with pytest.raises(ValueError, match="unknown DAG engine"):
        get_dag_engine("nope")


def test_outputs_of_another_shape_are_a_validation_error():
    """Outputs that cannot be compared stop the run as a validation failure (the challenge's
    ValidationError, which the CLI reports), not as an exception of numpy's."""
    from spdnn.validate import ValidationError

    ref = np.zeros((4, 3), np.float32)
    with pytest.raises(DagValidationError, match="output shapes differ") as err:
        compare_outputs(np.zeros((4, 2), np.float32), ref)
    assert isinstance(err.value, ValidationError)


def test_unknown_cuda_option_is_an_error():
    """A misspelt option is refused before any GPU is touched (no silent ignoring)."""
    from spdnn.dag.registry import get_dag_engine

    with pytest.raises(TypeError, match="max_colums"):
        get_dag_engine("cuda-warp", max_colums=64)


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["cuda-warp", "cuda-thread"])
def test_gpu_freed_rows_same_outputs(kernel):
    """Value rows reused after their last reader (the default) give the values of one row per node."""
    from spdnn.dag.shapes import deep_narrow

    freed = _gpu_engine(kernel)
    from spdnn.dag.registry import get_dag_engine

    kept = get_dag_engine(kernel, free_values=False)
    net = levelise(deep_narrow(40_000, seed=2))
    x = random_inputs(net.n_inputs, 200, seed=2)
    outs = []
    for engine in (freed, kept):
        engine.prepare(net)
        outs.append(engine.infer(x))
    assert outs[0].details["value_slots"] < 0.5 * outs[1].details["value_slots"] == 0.5 * net.n_nodes
    np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)
