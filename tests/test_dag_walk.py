"""dag_walk (spdnn.dag.cuda.walk_tables, kernels/dag_levels.cu): its tables and its pipeline
emulated on the CPU step by step (no GPU needed), and on the GPU against cuda-warp (bit for bit)
and the CPU engines.

The emulation runs what one block does, in the kernel's order: the prologue, then per group the
wait, the barrier, the structure staged 2 depth groups ahead, the far values `depth` groups
ahead, the group computed lane by lane from the staging buffers and the ring. It checks what
the kernel relies on but cannot check itself: every staged buffer holds the group it is read
for, a ring row holds the source the edge names, no group reads a ring row it overwrites, the
far values copied ahead are still the values when the copy is waited for (a cp.async may read
late), and every (node, column) is written once.
"""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.cpu import SequentialEngine
from spdnn.dag.cuda import WalkTables, choose_walk, walk_layout, walk_tables, warp_plan
from spdnn.dag.generate import generate, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.liveness import plan_values
from spdnn.dag.network import OUTPUT
from spdnn.dag.network import activate as act
from spdnn.dag.shapes import deep_narrow, neat
from spdnn.dag.validate import compare_outputs


def emulate_walk_launch(t: WalkTables, seg: int, values, ld, vec, log_lb, threads, sources, written):
    """One dag_walk launch over t.segments[seg] (every tile), on the global value rows `values`."""
    tile = (1 << log_lb) * vec
    k, d = t.ring, t.depth
    n_sbuf, n_fbuf = 2 * d + 1, d + 1
    node_cap, edge_cap, far_cap = (int(c) for c in t.caps[seg])
    g0, g1 = (int(g) for g in t.segments[seg])
    for block in range(ld // tile):
        cols = slice(block * tile, (block + 1) * tile)
        ring = np.full((k, tile), np.nan, np.float32)
        ring_row = np.full(k, -1)
        sbuf: list = [None] * n_sbuf
        fbuf: list = [None] * n_fbuf

        def stage(g):
            a, b = t.info[g], t.info[g + 1]
            assert b[0] - a[0] <= node_cap and b[1] - a[1] <= edge_cap and b[2] - a[2] <= far_cap
            sbuf[g % n_sbuf] = {
                "group": g,
                "row0": a[0],
                "log_le": a[3],
                "nodes": t.nodes[a[0] : b[0]],
                "edges": t.edges[a[1] : b[1]],
                "edge0": a[1],
                "far": t.far[a[2] : b[2]],
            }

        def far_values(g):
            s = sbuf[g % n_sbuf]
            assert s["group"] == g, "far values issued from another group's staged structure"
            fbuf[g % n_fbuf] = {"group": g, "slots": s["far"], "values": values[s["far"], cols].copy()}

        for j in range(2 * d):
            if g0 + j < g1:
                stage(g0 + j)
        for j in range(d):
            if g0 + j < g1:
                far_values(g0 + j)
        for g in range(g0, g1):
            f = fbuf[g % n_fbuf]
            assert f["group"] == g
            # a cp.async may read any time up to this wait: the rows must not have changed since the issue
            assert np.array_equal(values[f["slots"], cols], f["values"], equal_nan=True), f"far rows rewritten, {g}"
            if g + 2 * d < g1:
                stage(g + 2 * d)
            if g + d < g1:
                far_values(g + d)
            s = sbuf[g % n_sbuf]
            assert s["group"] == g, "a group computed from another group's staged structure"
            log_le = int(s["log_le"])
            log_tpn = log_lb + log_le
            le, per_warp, warps = 1 << log_le, 32 >> log_tpn, threads // 32
            n_nodes = s["nodes"].shape[0]
            reads, results = set(), []
            for warp in range(warps):
                for base in range(warp * per_warp, n_nodes, warps * per_warp):
                    for p in range(base, min(base + per_warp, n_nodes)):
                        e0, bias_bits, dst, word = (int(v) for v in s["nodes"][p])
                        cnt = word >> 8
                        part = np.zeros((le, tile), np.float32)
                        for el in range(le):
                            for e in range(el, cnt, le):
                                code, wbits = s["edges"][e0 + e]
                                src = int(sources[s["edge0"] + e0 + e])
                                if code >= 0:
                                    assert ring_row[code] == src, f"ring row {code} holds {ring_row[code]}, not {src}"
                                    v = ring[code]
                                    reads.add(int(code))
                                else:
                                    assert f["slots"][-code - 1] == t.slot[src]
                                    v = f["values"][-code - 1]
                                part[el] += np.int32(wbits).view(np.float32) * v
                        bit = 1
                        while bit < le:  # the butterfly: e_lanes that differ in one bit, lowest first
                            part = part + part[np.arange(le) ^ bit]
                            bit <<= 1
                        z = act(part[0] + np.int32(bias_bits).view(np.float32), word & 0xFF)
                        results.append((int(s["row0"]) + p, dst, z))
            for row, dst, z in results:  # after the group's reads: they run together on the GPU
                r = row % k
                assert r not in reads, f"group {g} overwrites ring row {r} that it reads"
                ring[r], ring_row[r] = z, row
                if dst >= 0:
                    values[dst, cols] = z
                written[row, cols] += 1


def emulate_network(net, x, walk_tile=8, depth=4, threads=64, shared_limit=232448, free=True, chosen=None, vec=None):
    """The engine's plan on a network (choose_walk's, or `chosen`): dag_walk's runs emulated, the other
    groups computed plainly (as any kernel computes them) into the same value slots.
    Returns (outputs, tables, walked)."""
    batch = x.shape[0]
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    vp = plan_values(net, free)
    if chosen is None:
        chosen = choose_walk(net, plan, vp.slot, walk_tile, depth, shared_limit)
    assert chosen is not None
    tables, log_lb, tile, walked = chosen
    assert plan.tile % tile == 0

    def launch(seg, values, ld, written):
        emulate_walk_launch(tables, seg, values, ld, vec or plan.vec, log_lb, threads, net.sources, written)

    return emulate_plan(net, x, plan, vp, walked, launch), tables, walked


def emulate_plan(net, x, plan, vp, walked, launch):
    """The warp plan's segments on the value rows: `launch(run, values, ld, written)` for the walked
    ones, the other groups computed plainly (as any kernel computes them). Returns the outputs."""
    batch = x.shape[0]
    ld = -(-batch // plan.tile) * plan.tile
    values = np.full((vp.n_slots, ld), np.nan, np.float32)
    values[: net.n_inputs] = 0
    values[: net.n_inputs, :batch] = x.T
    written = np.zeros((net.n_nodes, ld), int)
    for i, s in enumerate(plan.segments):
        if i in walked:
            launch(walked[i], values, ld, written)
            continue
        for g in range(s.l0, s.l1):
            for r in range(net.level_ptr[g], net.level_ptr[g + 1]):
                e0, e1 = net.indptr[r], net.indptr[r + 1]
                z = net.weights[e0:e1] @ values[vp.src_slot[e0:e1]] + net.bias[r]
                values[vp.slot[r]] = act(z.astype(np.float32), int(net.activation[r]))
                written[r] += 1
    assert np.all(written[net.n_inputs :] == 1), "every (node, column) written exactly once"
    return values[vp.slot[net.output_rows], :batch].T


def reference(net, x):
    e = SequentialEngine()
    e.prepare(net)
    return e.infer(x).outputs


@pytest.mark.parametrize("batch, depth", [(1, 4), (5, 1), (70, 2), (130, 8)])
def test_walk_emulated_deep_narrow(batch, depth):
    """A deep, narrow network walked in one run: the lanes plans of batches 1 .. 130 (VEC 1 and 4, LE 1 to 8)."""
    net = levelise(deep_narrow(6000, seed=batch))
    assert net.n_levels > 120
    x = random_inputs(net.n_inputs, batch, seed=3)
    out, tables, walked = emulate_network(net, x, depth=depth)
    assert len(walked) == 1 and tables.segments[0, 1] - tables.segments[0, 0] == net.n_levels - 1
    assert 0 < (~tables.near).sum() < tables.near.size  # both kinds of source read
    assert compare_outputs(out, reference(net, x)).passed


@pytest.mark.parametrize("batch", [70, 130])
def test_walk_emulated_one_vector_a_lane(batch):
    """walk_vec1: the batch-1 plan's lanes (VEC 1, one vector a tile, LE over the edges) at a wide batch,
    with a small ring (what engine option walk_ring_bytes gives)."""
    net = levelise(deep_narrow(6000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=3)
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    lanes = warp_plan(net.level_ptr, net.indptr, 1)
    chosen = choose_walk(net, plan, plan_values(net).slot, 1, 4, 232448, lanes, 4 * 256)
    tables, log_lb, tile, walked = chosen
    assert (log_lb, tile) == (0, 1) and tables.ring == 256 and tables.info[:-1, 3].max() >= 2
    out, _, _ = emulate_network(net, x, threads=32, chosen=chosen, vec=1)
    assert compare_outputs(out, reference(net, x)).passed


def test_walk_small_ring_mostly_far_and_kept_rows():
    """A ring so small that most sources are far: the far staging carries them; also with one row per node."""
    net = levelise(deep_narrow(4000, seed=9))
    x = random_inputs(net.n_inputs, 9, seed=1)
    for free in (True, False):
        # 13 kB of shared memory: 7 kB of staged structure, a ring of a few dozen rows (8 columns)
        out, tables, _ = emulate_network(net, x, shared_limit=13_000, free=free)
        assert tables.ring < 64 and (~tables.near).mean() > 0.2
        assert compare_outputs(out, reference(net, x)).passed


@pytest.mark.parametrize("seed, depth", [(2, 2), (3, 1), (3, 4)])
def test_walk_tightest_ring(seed, depth):
    """The smallest ring the tables accept (networks where it leaves far sources as close as depth + 1
    groups, the closest allowed): their values are copied just in time."""
    net = levelise(deep_narrow(4000, seed=seed))
    batch = 9
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    log_le = np.zeros(net.n_levels, np.int64)
    for seg in plan.segments:
        log_le[seg.l0 : seg.l1] = seg.log_le
    runs = np.array([[1, net.n_levels]])
    args = (net.indptr, net.sources, net.weights, net.level_ptr, runs, net.bias, net.activation, log_le)
    slot = plan_values(net).slot
    accepted = [k for k in range(1, 200) if len(walk_tables(*args, net.role == OUTPUT, k, depth, slot).segments)]
    tight = walk_tables(*args, net.role == OUTPUT, accepted[0], depth, slot)
    group = np.repeat(np.arange(net.n_levels), np.diff(net.level_ptr))
    reader = group[np.repeat(np.arange(net.n_nodes), np.diff(net.indptr))]
    far = ~tight.near & (net.sources >= net.n_inputs)
    assert (reader - group[net.sources])[far].min() == depth + 1  # the closest a far source may be
    x = random_inputs(net.n_inputs, batch, seed=4)
    assert len(plan.segments) == 1
    out, _, _ = emulate_network(net, x, chosen=(tight, *walk_layout(plan.vec, plan.log_lb, 8), {0: 0}))
    assert compare_outputs(out, reference(net, x)).passed


def test_walk_mixed_with_wide_groups():
    """Runs of small groups walked between wide groups run by the warp kernel (NEAT at batch 40: 32 lanes
    a node, so groups of more than 32 nodes are wide)."""
    for spec in (neat(8_000, seed=4), neat(20_000, seed=4)):
        net = levelise(spec)
        x = random_inputs(net.n_inputs, 40, seed=2)
        out, tables, walked = emulate_network(net, x)
        plan = warp_plan(net.level_ptr, net.indptr, 40)
        assert 0 < len(walked) < len(plan.segments)
        assert compare_outputs(out, reference(net, x)).passed


def test_walk_tables_leave_out_runs_they_cannot_serve():
    """A far edge from the group just before its reader cannot be copied ahead: its run is not taken."""
    net = levelise(deep_narrow(3000, seed=1))
    lp = net.level_ptr
    log_le = np.zeros(net.n_levels, np.int64)
    runs = np.array([[1, net.n_levels]])
    keep = net.role == OUTPUT
    args = (net.indptr, net.sources, net.weights, lp, runs, net.bias, net.activation, log_le, keep)
    ok = walk_tables(*args, ring=64, depth=2, slot=plan_values(net).slot)
    assert len(ok.segments) == 1
    # a one-row ring: every source is far, including those of the group just before
    bad = walk_tables(*args, ring=1, depth=2, slot=plan_values(net).slot)
    assert len(bad.segments) == 0 and not bad.near.any()
    # no run walked: every row any edge reads is written to global memory
    assert np.all(bad.nodes[np.unique(net.sources), 2] >= 0)
    with pytest.raises(ValueError, match="depth"):
        walk_tables(*args, ring=64, depth=9)


def test_walk_takes_the_one_block_segments():
    """choose_walk takes every run of small groups (one-block segments of the warp plan), none of the wide ones."""
    net = levelise(neat(8_000, seed=4))
    plan = warp_plan(net.level_ptr, net.indptr, 40)
    runs = {i for i, s in enumerate(plan.segments) if s.grid_x == 1}
    assert 0 < len(runs) < len(plan.segments)
    _, _, _, walked = choose_walk(net, plan, plan_values(net).slot, 8, 4, 232448)
    assert set(walked) == runs
    wide = levelise(generate("pruned", 50_000, seed=1))  # no group small enough for one block a tile
    plan = warp_plan(wide.level_ptr, wide.indptr, 100)
    assert choose_walk(wide, plan, plan_values(wide).slot, 8, 4, 232448) is None


# ----------------------------------------------------------------------------- on the GPU


def _engine(name: str, **options):
    pytest.importorskip("pycuda")
    from spdnn.dag.engine import EngineUnavailable
    from spdnn.dag.registry import get_dag_engine

    try:
        return get_dag_engine(name, **options)
    except EngineUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 33, 1000])
@pytest.mark.parametrize("shape", ["deep-narrow", "random-order", "neat"])
def test_gpu_walk_equals_warp_bit_for_bit(shape, batch):
    """cuda-walk's outputs are cuda-warp's (walk=False) bit for bit, and the CPU engine's to rounding."""
    from spdnn.dag.shapes import generate_shape

    net = levelise(generate_shape(shape, 60_000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=5)
    outs = gpu_outputs(net, x, _engine("cuda-walk"), _engine("cuda-warp", walk=False))
    assert outs[0].details["walk_segments"] >= 1 and "walk_segments" not in outs[1].details
    np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)
    assert_matches_cpu(net, x, outs[0].outputs)


def gpu_outputs(net, x, *engines) -> list:
    """Each engine's result on (net, x)."""
    outs = []
    for engine in engines:
        engine.prepare(net)
        outs.append(engine.infer(x))
    return outs


def assert_matches_cpu(net, x, outputs) -> None:
    from spdnn.dag.compiled import CompiledEngine

    cpu = CompiledEngine()
    cpu.prepare(net)
    assert compare_outputs(outputs, cpu.infer(x).outputs).passed


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 70, 1000])
@pytest.mark.parametrize("ring", [4096, 16384])
def test_gpu_walk_one_vector_a_lane(batch, ring):
    """walk_vec1 (one vector a lane, 32 threads, a small ring) matches the CPU engine at every batch."""
    from spdnn.dag.shapes import generate_shape

    net = levelise(generate_shape("deep-narrow", 60_000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=5)
    options = {"walk_vec1": True, "walk_tile": 1, "walk_threads": 32, "walk_ring_bytes": ring}
    (out,) = gpu_outputs(net, x, _engine("cuda-walk", **options))
    assert out.details["walk_segments"] >= 1
    assert_matches_cpu(net, x, out.outputs)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda-walk", "cuda-lane"])
def test_gpu_walk_chunked_and_freed_rows(name):
    """Chunked columns and one row per node give cuda-walk's (and cuda-lane's) outputs bit for bit (LE is
    1 at these widths)."""
    net = levelise(deep_narrow(100_000, seed=3))
    x = random_inputs(net.n_inputs, 300, seed=3)
    options = ({}, {"max_columns": 128}, {"free_values": False})
    outs = gpu_outputs(net, x, *(_engine(name, **o) for o in options))
    assert outs[0].details["walk_segments"] == 1 and outs[0].details["launches"] == 1
    assert outs[1].details["chunk_columns"] == 128
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0].outputs, other.outputs)
    assert compare_outputs(outs[0].outputs, reference(net, x)).passed
