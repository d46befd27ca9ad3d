"""dag_lane (spdnn.dag.cuda.choose_lane, kernels/dag_levels.cu): its pipeline emulated on the CPU
step by step (no GPU needed), and on the GPU against cuda-warp (bit for bit where the warp plan
sums in edge order) and the CPU engines.

The emulation runs what every thread does, in the kernel's order, for all columns at once (the
threads share nothing but the structure and take the same path): the far values of the first
`depth` groups issued, then per group the far values of group + depth issued, the wait, and the
group's nodes computed in order into the ring and, where a row is needed, global memory. It
checks what the kernel relies on but cannot check itself: a far slot holds the group it is read
for and its values did not change between the issue and the read (a cp.async may read late), a
ring row holds the source the edge names, and every (node, column) is written once.
"""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.cuda import WalkTables, choose_lane, lane_shared_bytes, warp_plan
from spdnn.dag.generate import generate, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.liveness import plan_values
from spdnn.dag.network import activate as act
from spdnn.dag.shapes import deep_narrow, neat
from spdnn.dag.validate import compare_outputs

from .test_dag_walk import _engine, reference


def emulate_lane_launch(t: WalkTables, seg: int, values, sources, written) -> None:
    """One dag_lane launch over t.segments[seg], every column of `values` at once."""
    k, d = t.ring, t.depth
    g0, g1 = (int(g) for g in t.segments[seg])
    far_cap = int(t.caps[seg][2])
    ring = np.full((k, values.shape[1]), np.nan, np.float32)
    ring_row = np.full(k, -1)
    fbuf: list = [None] * (d + 1)

    def issue(g):
        a, b = t.info[g], t.info[g + 1]
        slots = t.far[a[2] : b[2]]
        assert slots.size <= far_cap
        fbuf[g % (d + 1)] = {"group": g, "slots": slots, "values": values[slots].copy()}

    for j in range(d):
        if g0 + j < g1:
            issue(g0 + j)
    pos = int(t.info[g0][0]) % k
    for g in range(g0, g1):
        if g + d < g1:
            issue(g + d)
        f = fbuf[g % (d + 1)]
        assert f["group"] == g, "a group read another group's far slot"
        assert np.array_equal(values[f["slots"]], f["values"], equal_nan=True), (
            f"far rows rewritten before {g} read them"
        )
        a, b = t.info[g], t.info[g + 1]
        for r in range(int(a[0]), int(b[0])):
            e0, bias_bits, dst, word = (int(v) for v in t.nodes[r])
            acc = np.zeros(values.shape[1], np.float32)
            for e in range(word >> 8):
                code, wbits = t.edges[a[1] + e0 + e]
                src = int(sources[a[1] + e0 + e])
                if code >= 0:
                    assert ring_row[code] == src, f"ring row {code} holds {ring_row[code]}, not {src}"
                    v = ring[code]
                else:
                    assert f["slots"][-code - 1] == t.slot[src]
                    v = f["values"][-code - 1]
                acc = acc + np.int32(wbits).view(np.float32) * v
            z = act(acc + np.int32(bias_bits).view(np.float32), word & 0xFF)
            assert pos == r % k
            ring[pos], ring_row[pos] = z, r
            pos = (pos + 1) % k
            if dst >= 0:
                values[dst] = z
            written[r] += 1


def emulate_network(net, x, threads=32, depth=4, shared_limit=232448, free=True):
    """The engine's plan on a network: choose_lane's runs emulated, the other groups computed plainly
    into the same value slots. Returns (outputs, tables, walked)."""
    batch = x.shape[0]
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    vp = plan_values(net, free)
    chosen = choose_lane(net, plan, vp.slot, min(threads, plan.tile), depth, shared_limit)
    assert chosen is not None
    tables, walked = chosen
    ld = -(-batch // plan.tile) * plan.tile
    values = np.full((vp.n_slots, ld), np.nan, np.float32)
    values[: net.n_inputs] = 0
    values[: net.n_inputs, :batch] = x.T
    written = np.zeros((net.n_nodes, ld), int)
    for i, s in enumerate(plan.segments):
        if i in walked:
            emulate_lane_launch(tables, walked[i], values, net.sources, written)
            continue
        for g in range(s.l0, s.l1):
            for r in range(net.level_ptr[g], net.level_ptr[g + 1]):
                e0, e1 = net.indptr[r], net.indptr[r + 1]
                z = net.weights[e0:e1] @ values[vp.src_slot[e0:e1]] + net.bias[r]
                values[vp.slot[r]] = act(z.astype(np.float32), int(net.activation[r]))
                written[r] += 1
    assert np.all(written[net.n_inputs :] == 1), "every (node, column) written exactly once"
    return values[vp.slot[net.output_rows], :batch].T, tables, walked


@pytest.mark.parametrize("batch, depth", [(1, 4), (5, 1), (130, 7)])
def test_lane_emulated_deep_narrow(batch, depth):
    """A deep, narrow network walked in one run, every node summed in edge order (LE = 1)."""
    net = levelise(deep_narrow(6000, seed=batch))
    assert net.n_levels > 120
    x = random_inputs(net.n_inputs, batch, seed=3)
    out, tables, walked = emulate_network(net, x, depth=depth)
    assert len(walked) == 1 and tables.segments[0, 1] - tables.segments[0, 0] == net.n_levels - 1
    assert not tables.info[:, 3].any()  # LE = 1 everywhere
    assert 0 < (~tables.near).sum() < tables.near.size  # both kinds of source read
    assert compare_outputs(out, reference(net, x)).passed


def test_lane_small_ring_mostly_far():
    """Shared memory for a ring of a few rows: most sources are far, copied ahead; also one row per node."""
    net = levelise(deep_narrow(4000, seed=9))
    x = random_inputs(net.n_inputs, 40, seed=1)
    for free in (True, False):
        out, tables, _ = emulate_network(net, x, depth=2, shared_limit=16_000, free=free)
        assert tables.ring < 64 and (~tables.near).mean() > 0.2
        assert lane_shared_bytes(tables.ring, tables.depth, int(tables.caps[0][2]), 32) <= 16_000
        assert compare_outputs(out, reference(net, x)).passed


def test_lane_mixed_with_wide_groups():
    """Runs of small groups walked between wide groups run by the warp kernel (NEAT at batch 40)."""
    net = levelise(neat(8_000, seed=4))
    x = random_inputs(net.n_inputs, 40, seed=2)
    out, _, walked = emulate_network(net, x)
    plan = warp_plan(net.level_ptr, net.indptr, 40)
    assert 0 < len(walked) < len(plan.segments)
    assert compare_outputs(out, reference(net, x)).passed


def test_lane_takes_no_wide_network():
    wide = levelise(generate("pruned", 50_000, seed=1))  # no group small enough for one block a tile
    plan = warp_plan(wide.level_ptr, wide.indptr, 100)
    assert choose_lane(wide, plan, plan_values(wide).slot, 32, 4, 232448) is None


def test_lane_options_checked():
    """Bad lane options are refused before any device is opened."""
    from spdnn.dag.cuda import DagCudaEngine

    for bad in ({"lane_threads": 48}, {"lane_depth": 8}, {"kernel": "lane", "walk": True}):
        with pytest.raises(ValueError):
            DagCudaEngine(**{"kernel": "lane", **bad})


# ----------------------------------------------------------------------------- on the GPU


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 33, 1000])
@pytest.mark.parametrize("shape", ["deep-narrow", "random-order", "neat"])
def test_gpu_lane_equals_cpu(shape, batch):
    """cuda-lane's outputs are the CPU engine's to rounding, and cuda-warp's bit for bit where the warp
    plan sums in edge order (LE = 1: from 128 input vectors on)."""
    from spdnn.dag.compiled import CompiledEngine
    from spdnn.dag.shapes import generate_shape

    net = levelise(generate_shape(shape, 60_000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=5)
    lane, warp = _engine("cuda-lane"), _engine("cuda-warp")
    outs = []
    for engine in (lane, warp):
        engine.prepare(net)
        outs.append(engine.infer(x))
    assert outs[0].details["walk_kernel"] == "dag_lane" and outs[0].details["walk_segments"] >= 1
    if batch >= 128:
        np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)
    cpu = CompiledEngine()
    cpu.prepare(net)
    assert compare_outputs(outs[0].outputs, cpu.infer(x).outputs).passed


@pytest.mark.gpu
def test_gpu_lane_chunked_and_freed_rows():
    """Chunked columns, one row per node and wider blocks give cuda-lane's outputs bit for bit."""
    net = levelise(deep_narrow(100_000, seed=3))
    x = random_inputs(net.n_inputs, 300, seed=3)
    outs = []
    for options in ({}, {"max_columns": 128}, {"free_values": False}, {"lane_threads": 128, "lane_depth": 2}):
        engine = _engine("cuda-lane", **options)
        engine.prepare(net)
        outs.append(engine.infer(x))
    assert outs[0].details["walk_segments"] == 1 and outs[0].details["launches"] == 1
    assert outs[1].details["chunk_columns"] == 128
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0].outputs, other.outputs)
    assert compare_outputs(outs[0].outputs, reference(net, x)).passed
