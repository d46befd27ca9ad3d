"""Populations of small networks run at once, and recurrent links unrolled over steps (CPU references)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spdnn.dag.compiled import CompiledEngine, ThreadedEngine
from spdnn.dag.cpu import SequentialEngine
from spdnn.dag.generate import evolved, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.population import blocked, population, run_blocked_cpu, union_spec
from spdnn.dag.recurrent import add_recurrent_links, feed_forward, simulate, unroll
from spdnn.dag.shapes import neat
from spdnn.dag.validate import compare_outputs


def one_at_a_time(pop, x):
    outs = []
    for m in pop.members:
        e = SequentialEngine(free_values=False)
        e.prepare(m)
        outs.append(e.infer(x).outputs)
    return outs


def test_population_union_and_blocked_equal_members_one_at_a_time():
    specs = [neat(1500 + 300 * k, seed=k, n_inputs=16, n_outputs=3 + k % 3) for k in range(7)]
    pop = population(specs)
    x = random_inputs(16, 21, seed=4)
    singles = one_at_a_time(pop, x)
    union = levelise(union_spec(pop))
    assert union.n_levels == max(m.n_levels for m in pop.members)
    assert union.n_edges == pop.n_edges and union.n_outputs == pop.out_ptr[-1]
    for engine in (CompiledEngine(), ThreadedEngine(threads=2)):
        engine.prepare(union)
        for got, ref in zip(pop.split(engine.infer(x).outputs), singles):
            assert compare_outputs(got, ref).passed
    b = blocked(pop)
    assert b.member_levels.size == len(specs) + 1
    for k, m in enumerate(pop.members):  # each member's groups are contiguous rows, in order
        lp = b.level_ptr[b.member_levels[k] : b.member_levels[k + 1]]
        assert np.array_equal(np.diff(lp), m.group_sizes()[1:])
    for got, ref in zip(pop.split(run_blocked_cpu(b, x)), singles):
        assert compare_outputs(got, ref).passed


def test_population_members_need_same_inputs():
    with pytest.raises(ValueError, match="different numbers of inputs"):
        population([neat(500, n_inputs=8), neat(500, n_inputs=9)])


def test_recurrent_unrolled_equals_step_by_step():
    base = evolved(2500, seed=6)
    spec, mask = add_recurrent_links(base, 60, seed=1)
    assert mask.sum() > 40
    x = random_inputs(int((spec.role == 0).sum()), 5, seed=2)
    for steps in (1, 2, 5):
        net = levelise(unroll(spec, mask, steps))
        ref = simulate(spec, mask, steps, x)
        engine = CompiledEngine()
        engine.prepare(net)
        assert compare_outputs(engine.infer(x).outputs, ref).passed, steps
    # one step carries nothing over: the feed-forward network
    ff = levelise(feed_forward(spec, mask))
    engine = SequentialEngine()
    engine.prepare(ff)
    assert compare_outputs(engine.infer(x).outputs, simulate(spec, mask, 1, x)).passed
    # with the recurrent links, more steps change the outputs
    assert not np.allclose(simulate(spec, mask, 3, x), simulate(spec, mask, 1, x))


def test_recurrent_self_loop_by_hand():
    # input 1 -> 2 (w 1), self-loop 2 -> 2 (w 0.5), identity: v_t = x + 0.5 v_{t-1}
    from spdnn.dag.network import IDENTITY, INPUT, OUTPUT, DagSpec

    spec = DagSpec(
        np.array([1, 2]),
        np.zeros(2, np.float32),
        np.array([IDENTITY, IDENTITY], np.int8),
        np.array([INPUT, OUTPUT], np.int8),
        np.array([1, 2]),
        np.array([2, 2]),
        np.array([1.0, 0.5], np.float32),
    )
    mask = np.array([False, True])
    x = np.array([[2.0]], np.float32)
    net = levelise(unroll(spec, mask, 4))
    assert net.n_levels == 5
    e = CompiledEngine()
    e.prepare(net)
    assert e.infer(x).outputs[0, 0] == pytest.approx(2 * (1 + 0.5 + 0.25 + 0.125))
    assert simulate(spec, mask, 4, x)[0, 0] == pytest.approx(3.75)


# ----------------------------------------------------------------------------- the one-launch GPU kernel


def emulate_population_kernel(b, x, block: int = 128):
    """dag_population's launch and index math in numpy, lane by lane (one block per member and tile)."""
    from spdnn.dag.network import activate as act
    from spdnn.dag.population_cuda import population_plan

    batch = x.shape[0]
    computed = b.n_rows - b.n_inputs
    vec, log_lb, log_le, tile = population_plan(batch, b.sources.size / max(1, computed))
    ld = -(-batch // tile) * tile
    values = np.full((b.n_rows, ld), np.nan, np.float32)
    values[: b.n_inputs] = 0
    values[: b.n_inputs, :batch] = x.T
    writes = np.zeros((b.n_rows, ld), int)
    log_tpn = log_lb + log_le
    tpn, le, per_warp, warps = 1 << log_tpn, 1 << log_le, 32 >> log_tpn, block >> 5
    lanes = np.arange(32)
    lig = lanes & (tpn - 1)
    b_lane, e_lane, grp = lig & ((1 << log_lb) - 1), lig >> log_lb, lanes >> log_tpn
    for m in range(b.member_levels.size - 1):
        for t in range(ld // tile):
            cols = (t * (1 << log_lb) + b_lane) * vec
            for level in range(b.member_levels[m], b.member_levels[m + 1] - 1):
                lo, hi = b.level_ptr[level], b.level_ptr[level + 1]
                for warp in range(warps):  # block 0 of 1: first = warp * per_warp, stride = warps * per_warp
                    for base in range(lo + warp * per_warp, hi, warps * per_warp):
                        acc = np.zeros((32, vec), np.float32)
                        for lane in range(32):
                            node = base + grp[lane]
                            if node < hi:
                                for e in range(b.indptr[node] + e_lane[lane], b.indptr[node + 1], le):
                                    acc[lane] += b.weights[e] * values[b.sources[e], cols[lane] : cols[lane] + vec]
                        for lane in range(32):
                            node = base + grp[lane]
                            if node < hi and e_lane[lane] == 0:
                                total = acc[(grp == grp[lane]) & (b_lane == b_lane[lane])].sum(axis=0)
                                values[node, cols[lane] : cols[lane] + vec] = act(
                                    total + b.bias[node], int(b.activation[node])
                                )
                                writes[node, cols[lane] : cols[lane] + vec] += 1
    assert np.all(writes[b.n_inputs :] == 1), "every (node, column) written exactly once"
    return values[b.output_rows, :batch].T


@pytest.mark.parametrize("batch", [1, 3, 65])
def test_population_kernel_index_math_emulated(batch):
    pop = population([neat(300 + 100 * k, seed=k, n_inputs=6, n_outputs=2) for k in range(3)])
    x = random_inputs(6, batch, seed=batch)
    ref = np.concatenate(one_at_a_time(pop, x), axis=1)
    assert compare_outputs(emulate_population_kernel(blocked(pop), x), ref).passed


def emulate_population_walk(b, x, walk_tile: int = 8, depth: int = 1, threads: int = 64):
    """The population engine's dag_walk launch (population_walk's tables, one run per member) emulated
    block by block with test_dag_walk's emulation of the kernel."""
    from spdnn.dag.cuda import walk_layout
    from spdnn.dag.population_cuda import population_plan, population_walk

    from .test_dag_walk import emulate_walk_launch

    batch = x.shape[0]
    vec, log_lb, log_le, tile = population_plan(batch, b.sources.size / max(1, b.n_rows - b.n_inputs))
    walk_lb, walk_tile = walk_layout(vec, log_lb, walk_tile)
    tables = population_walk(b, log_le, walk_tile, depth, shared_limit=232448)
    assert tables is not None
    ld = -(-batch // tile) * tile
    values = np.full((tables.n_slots, ld), np.nan, np.float32)
    values[: b.n_inputs] = 0
    values[: b.n_inputs, :batch] = x.T
    written = np.zeros((b.n_rows, ld), int)
    for m in range(len(tables.segments)):
        emulate_walk_launch(tables, m, values, ld, vec, walk_lb, threads, b.sources, written)
    assert np.all(written[b.n_inputs :] == 1), "every (node, column) written exactly once"
    return values[tables.slot[b.output_rows], :batch].T, tables


@pytest.mark.parametrize("batch, warps", [(1, 4), (5, 1), (40, 8)])
def test_population_lane_emulated(batch, warps):
    """The members walked by dag_lane (population_lane's tables and stream, one run per member),
    followed word by word by test_dag_lane's emulation; only inputs, outputs and far rows are global."""
    from spdnn.dag.population_cuda import population_lane

    from .test_dag_lane import emulate_lane_launch

    pop = population([neat(2000 + 500 * k, seed=k, n_inputs=6, n_outputs=2) for k in range(3)])
    x = random_inputs(6, batch, seed=batch)
    b = blocked(pop)
    got = population_lane(b, warps, shared_limit=232448)  # a 256-row ring: members of 400-700 rows
    assert got is not None
    lt, st = got
    t = lt.walk
    assert len(lt.segs) == 3 and st.warps == warps
    assert t.n_slots > b.n_inputs + b.output_rows.size  # rows the ring no longer holds, read back
    values = np.full((t.n_slots, batch), np.nan, np.float32)
    values[: b.n_inputs] = x.T
    written = np.zeros(b.n_rows, int)
    for m in range(len(lt.segs)):
        emulate_lane_launch(lt, st, m, b, values, written)
    assert np.all(written[b.n_inputs :] == 1), "every node written exactly once"
    out = values[t.slot[b.output_rows]].T
    assert compare_outputs(out, np.concatenate(one_at_a_time(pop, x), axis=1)).passed


def test_population_lane_options_checked():
    from spdnn.dag.population_cuda import PopulationCudaEngine

    with pytest.raises(ValueError, match="choose one"):
        PopulationCudaEngine(walk=True, lane=True)
    with pytest.raises(ValueError, match="lane_warps"):
        PopulationCudaEngine(lane=True, lane_warps=9)


def test_population_ring_options_checked():
    from spdnn.dag.population_cuda import PopulationCudaEngine

    with pytest.raises(ValueError, match="ring_rows"):
        PopulationCudaEngine(ring_rows=-1)
    with pytest.raises(ValueError, match="ring_rows"):
        PopulationCudaEngine(ring_rows=64, walk=True)
    with pytest.raises(ValueError, match="ring_rows"):
        PopulationCudaEngine(ring_rows=64, lane=True)
    with pytest.raises(ValueError, match="ring_tile"):
        PopulationCudaEngine(ring_rows=64, ring_tile=48)
    with pytest.raises(ValueError, match="ring_tile"):
        PopulationCudaEngine(ring_tile=64)  # the default kernel keeps its plan


def test_population_min_blocks_checked():
    from spdnn.dag.population_cuda import PopulationCudaEngine

    with pytest.raises(ValueError, match="min_blocks"):
        PopulationCudaEngine(min_blocks=-1)
    with pytest.raises(ValueError, match="min_blocks"):
        PopulationCudaEngine(block=1024, min_blocks=3)  # 3072 threads an SM
    with pytest.raises(ValueError, match="min_blocks"):
        PopulationCudaEngine(walk=True, min_blocks=2)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_population_bounds_build_keeps_the_registers():
    """POPULATION_MIN_BLOCKS reaches dag_population's launch bounds: four blocks of 512 threads an
    SM leave 32 registers a thread (65,536 a multiprocessor), and ptxas keeps dag_population4 to them
    without spills (by default it takes more, which allow two such blocks)."""
    from spdnn.dag.cuda import KERNEL_FILE
    from spdnn.engines.device import ptxas_usage

    def registers(*defines: str) -> dict[str, tuple[int, int]]:
        return ptxas_usage(KERNEL_FILE, ["-O3", *defines])

    default = registers()
    bounded = registers("-DPOPULATION_THREADS=512", "-DPOPULATION_MIN_BLOCKS=4")
    regs, spills = bounded["dag_population4"]
    assert regs <= 32 and spills == 0 and default["dag_population4"][0] > 32, (bounded, default)
    assert bounded["dag_population_ring4"][0] <= 32  # the ring kernel spills a little there (40 bytes)
    assert bounded["dag_warp4"] == default["dag_warp4"]  # the other kernels keep their build


def test_population_plan_caps_the_tile():
    from spdnn.dag.population_cuda import population_plan

    assert population_plan(1000, 5.0) == (4, 5, 0, 128)
    vec, log_lb, log_le, tile = population_plan(1000, 5.0, 64)
    assert (vec, tile) == (4, 64) and (1 << log_lb) == 16 and (1 << (log_lb + log_le)) <= 32
    assert population_plan(1, 5.0, 64) == population_plan(1, 5.0)  # batch 1: one vector anyway


@pytest.mark.parametrize("batch, depth", [(1, 1), (3, 2), (65, 1)])
def test_population_walk_emulated(batch, depth):
    """The members walked with their values in the ring: only inputs and outputs need global rows."""
    pop = population([neat(300 + 100 * k, seed=k, n_inputs=6, n_outputs=2) for k in range(3)])
    x = random_inputs(6, batch, seed=batch)
    b = blocked(pop)
    out, tables = emulate_population_walk(b, x, depth=depth)
    assert tables.n_slots == b.n_inputs + b.output_rows.size  # every member fits its ring
    assert compare_outputs(out, np.concatenate(one_at_a_time(pop, x), axis=1)).passed


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 100, 1000])
def test_population_gpu_equals_members_one_at_a_time(batch):
    pytest.importorskip("pycuda")
    from spdnn.dag.engine import EngineUnavailable
    from spdnn.dag.population_cuda import PopulationCudaEngine

    try:
        engine = PopulationCudaEngine()
    except EngineUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")
    pop = population([neat(2000, seed=k, n_inputs=32, n_outputs=4) for k in range(50)])
    x = random_inputs(32, batch, seed=1)
    engine.prepare(pop)
    result = engine.infer(x)
    assert result.details["launches"] == 1 and result.details["kernel"] == "population"
    for got, ref in zip(pop.split(result.outputs), one_at_a_time(pop, x)):
        assert compare_outputs(got, ref).passed
    # dag_walk and the one-row-per-node kernel sum alike: the same bits
    walk = PopulationCudaEngine(walk=True)
    walk.prepare(pop)
    res_walk = walk.infer(x)
    assert res_walk.details["kernel"] == "walk" and res_walk.details["launches"] == 1
    np.testing.assert_array_equal(result.outputs, res_walk.outputs)
    # one vector a lane (the batch-1 lanes at any batch): each member's outputs to rounding
    vec1 = PopulationCudaEngine(walk=True, walk_vec1=True, walk_tile=1, walk_threads=32)
    vec1.prepare(pop)
    res_vec1 = vec1.infer(x)
    assert res_vec1.details["kernel"] == "walk"
    for got, ref in zip(pop.split(res_vec1.outputs), one_at_a_time(pop, x)):
        assert compare_outputs(got, ref).passed


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 100, 1000])
def test_population_gpu_lane(batch):
    """dag_lane (a thread per vector walks each member, edges in order) gives each member's outputs,
    on members whose rows outgrow its ring (far rows read back)."""
    pytest.importorskip("pycuda")
    from spdnn.dag.engine import EngineUnavailable
    from spdnn.dag.population_cuda import PopulationCudaEngine

    pop = population([neat(2000 + 500 * k, seed=k, n_inputs=6, n_outputs=2) for k in range(3)])
    x = random_inputs(6, batch, seed=batch)
    for warps in (1, 4):
        try:
            lane = PopulationCudaEngine(lane=True, lane_warps=warps)
        except EngineUnavailable as err:
            pytest.skip(f"no usable GPU: {err}")
        lane.prepare(pop)
        res = lane.infer(x)
        assert res.details["kernel"] == "lane" and res.details["lane_warps"] == warps
        for got, ref in zip(pop.split(res.outputs), one_at_a_time(pop, x)):
            assert compare_outputs(got, ref).passed


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 100, 1000])
def test_population_gpu_ring_equals_default(batch):
    """dag_population_ring (the member's last rows in shared memory, far rows from global memory)
    sums as dag_population does: the same bits, for rings from a few rows to the whole member; a
    ring over the shared memory a block may have is refused by name."""
    pytest.importorskip("pycuda")
    from spdnn.dag.engine import EngineUnavailable
    from spdnn.dag.population_cuda import PopulationCudaEngine

    try:
        default = PopulationCudaEngine()
    except EngineUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")
    pop = population([neat(2000 + 300 * k, seed=k, n_inputs=32, n_outputs=4) for k in range(20)])
    x = random_inputs(32, batch, seed=batch)
    default.prepare(pop)
    ref = default.infer(x)
    for got, want in zip(pop.split(ref.outputs), one_at_a_time(pop, x)):
        assert compare_outputs(got, want).passed
    for ring in (4, 64, 256):
        eng = PopulationCudaEngine(ring_rows=ring)
        eng.prepare(pop)
        res = eng.infer(x)
        assert res.details["kernel"] == "population-ring" and res.details["ring_rows"] == ring
        if ring == 256:  # rows read only from the ring and not outputs are never stored
            assert res.details["ring_rows_stored"] < eng.layout.n_rows
        np.testing.assert_array_equal(res.outputs, ref.outputs)
    # a narrower tile: other lanes over the edges, so each member's outputs to rounding
    narrow = PopulationCudaEngine(ring_rows=256, ring_tile=64)
    narrow.prepare(pop)
    res = narrow.infer(x)
    assert res.details["kernel"] == "population-ring" and res.details["ring_tile"] <= 64
    for got, want in zip(pop.split(res.outputs), one_at_a_time(pop, x)):
        assert compare_outputs(got, want).passed
    # launch bounds for 4 blocks of 512 an SM: fewer registers, the same bits
    bounded = PopulationCudaEngine(min_blocks=4)
    bounded.prepare(pop)
    res = bounded.infer(x)
    assert res.details["min_blocks"] == 4 and res.details["registers"] <= 32
    np.testing.assert_array_equal(res.outputs, ref.outputs)
    huge = PopulationCudaEngine(ring_rows=1 << 16)
    huge.prepare(pop)
    with pytest.raises(ValueError, match="shared memory"):
        huge.infer(x)
