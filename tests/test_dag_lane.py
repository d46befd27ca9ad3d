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

from spdnn.dag.cuda import LaneTables, choose_lane, lane_shared_bytes, warp_plan
from spdnn.dag.generate import generate, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.liveness import plan_values
from spdnn.dag.network import OUTPUT
from spdnn.dag.network import activate as act
from spdnn.dag.shapes import deep_narrow, neat
from spdnn.dag.validate import compare_outputs

from .test_dag_walk import _engine, assert_matches_cpu, emulate_plan, gpu_outputs, reference


def emulate_lane_launch(lt: LaneTables, seg: int, values, sources, written) -> None:
    """One dag_lane launch over run `seg` of lt, every column of `values` at once."""
    t = lt.walk
    k = t.ring
    cap_g, cap_n, cap_e, cap_f = lt.caps
    b0, b1 = (int(b) for b in lt.segs[seg])
    bounds = lt.bounds.astype(np.int64)
    ring = np.full((k, values.shape[1]), np.nan, np.float32)
    ring_row = np.full(k, -1)
    fbuf: list = [None, None]

    def issue(i):  # chunk i's far values, copied by each thread for its column
        a, b = t.info[bounds[i]], t.info[bounds[i + 1]]
        assert b[2] - a[2] <= cap_f and b[1] - a[1] <= cap_e and b[0] - a[0] <= cap_n
        assert bounds[i + 1] - bounds[i] <= cap_g
        slots = t.far[a[2] : b[2]]
        fbuf[i % 2] = {"chunk": i, "first": int(a[2]), "slots": slots, "values": values[slots].copy()}

    issue(b0)
    pos = int(t.info[bounds[b0]][0]) % k
    for i in range(b0, b1):
        f = fbuf[i % 2]
        assert f["chunk"] == i, "a chunk read another chunk's far buffer"
        # a cp.async may read any time up to the wait at the start of chunk i
        assert np.array_equal(values[f["slots"]], f["values"], equal_nan=True), f"far rows rewritten before chunk {i}"
        if i + 1 < b1:
            issue(i + 1)
        for g in range(int(bounds[i]), int(bounds[i + 1])):
            a, b = t.info[g], t.info[g + 1]
            reads, results = set(), []
            for r in range(int(a[0]), int(b[0])):
                e0, bias_bits, dst, word = (int(v) for v in t.nodes[r])
                acc = np.zeros(values.shape[1], np.float32)
                for e in range(word >> 8):
                    code, wbits = t.edges[a[1] + e0 + e]
                    src = int(sources[a[1] + e0 + e])
                    if code >= 0:
                        assert ring_row[code] == src, f"ring row {code} holds {ring_row[code]}, not {src}"
                        v = ring[code]
                        reads.add(int(code))
                    else:
                        entry = int(a[2]) - f["first"] + (-code - 1)
                        assert f["slots"][entry] == t.slot[src]
                        v = f["values"][entry]
                    acc = acc + np.int32(wbits).view(np.float32) * v
                results.append((r, dst, act(acc + np.int32(bias_bits).view(np.float32), word & 0xFF)))
            for r, dst, z in results:  # a group's loads run a batch ahead of its writes
                assert pos == r % k and pos not in reads, f"group {g} overwrites ring row {pos} that it reads"
                ring[pos], ring_row[pos] = z, r
                pos = (pos + 1) % k
                if dst >= 0:
                    values[dst] = z
                written[r] += 1


def emulate_network(net, x, shared_limit=232448, free=True, caps=None):
    """The engine's plan on a network: choose_lane's runs emulated, the other groups computed plainly
    into the same value slots. Returns (outputs, tables, walked)."""
    batch = x.shape[0]
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    vp = plan_values(net, free)
    chosen = choose_lane(net, plan, vp.slot, shared_limit, *([caps] if caps else []))
    assert chosen is not None
    tables, walked = chosen
    out = emulate_plan(
        net,
        x,
        plan,
        vp,
        walked,
        lambda seg, values, ld, written: emulate_lane_launch(tables, seg, values, net.sources, written),
    )
    return out, tables, walked


@pytest.mark.parametrize("batch, caps", [(1, None), (5, (8, 32, 96, 32)), (130, (3, 16, 80, 32))])
def test_lane_emulated_deep_narrow(batch, caps):
    """A deep, narrow network walked in one run (default chunks, and small ones: many chunk turns)."""
    net = levelise(deep_narrow(6000, seed=batch))
    assert net.n_levels > 120
    x = random_inputs(net.n_inputs, batch, seed=3)
    out, tables, walked = emulate_network(net, x, caps=caps)
    t = tables.walk
    assert len(walked) == 1 and t.segments[0, 1] - t.segments[0, 0] == net.n_levels - 1
    assert not t.info[:, 3].any()  # LE = 1 everywhere
    assert 0 < (~t.near).sum() < t.near.size  # both kinds of source read
    assert tables.bounds.size - 1 >= (net.n_levels - 1) / (caps[0] if caps else 64)
    assert compare_outputs(out, reference(net, x)).passed


def test_lane_small_ring_mostly_far():
    """Shared memory for a ring of a few rows: most sources are far, copied ahead; also one row per node."""
    net = levelise(deep_narrow(4000, seed=9))
    x = random_inputs(net.n_inputs, 40, seed=1)
    caps = (8, 32, 96, 64)
    limit = lane_shared_bytes(40, caps)
    for free in (True, False):
        out, tables, _ = emulate_network(net, x, shared_limit=limit, free=free, caps=caps)
        assert tables.walk.ring <= 40 and (~tables.walk.near).mean() > 0.2
        assert tables.shared_bytes() <= limit
        assert compare_outputs(out, reference(net, x)).passed


def test_lane_chunks_refuse_far_sources_too_close():
    """A far source written in the chunk just before its reader's cannot be copied in time: with a one-row
    ring (every source far) no run is served; every group must also fit a chunk."""
    from spdnn.dag.cuda import lane_chunks, walk_tables

    net = levelise(deep_narrow(3000, seed=1))
    lp = net.level_ptr
    runs = np.array([[1, net.n_levels]])
    args = (net.indptr, net.sources, net.weights, lp, runs, net.bias, net.activation, np.zeros(net.n_levels, np.int64))
    group_of = np.full(net.n_nodes, -1)
    group_of[lp[0] : lp[-1]] = np.repeat(np.arange(net.n_levels), np.diff(lp))
    slot = plan_values(net).slot
    tight = walk_tables(*args, net.role == OUTPUT, 1, 1, slot=slot)
    assert lane_chunks(tight, (64, 256, 1024, 1024), group_of) == ([], [])
    roomy = walk_tables(*args, net.role == OUTPUT, 512, 1, slot=slot)
    served, rows = lane_chunks(roomy, (64, 256, 1024, 128), group_of)
    assert rows == [0] and served[0][0] == 1 and served[0][-1] == net.n_levels
    assert lane_chunks(roomy, (64, 256, 4, 128), group_of) == ([], [])  # a group of more than 4 edges


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
    assert choose_lane(wide, plan, plan_values(wide).slot, 232448) is None


def test_lane_option_checked():
    """walk=True is refused with the lane kernel before any device is opened."""
    from spdnn.dag.cuda import DagCudaEngine

    with pytest.raises(ValueError, match="walk=True"):
        DagCudaEngine(kernel="lane", walk=True)


# ----------------------------------------------------------------------------- on the GPU


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 33, 1000])
@pytest.mark.parametrize("shape", ["deep-narrow", "random-order", "neat"])
def test_gpu_lane_equals_cpu(shape, batch):
    """cuda-lane's outputs are the CPU engine's to rounding, and cuda-warp's bit for bit where the warp
    plan sums in edge order (LE = 1: from 128 input vectors on)."""
    from spdnn.dag.shapes import generate_shape

    net = levelise(generate_shape(shape, 60_000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=5)
    outs = gpu_outputs(net, x, _engine("cuda-lane"), _engine("cuda-warp"))
    if shape == "deep-narrow":  # the others may have no run of small groups at this batch
        assert outs[0].details["walk_kernel"] == "dag_lane" and outs[0].details["walk_segments"] >= 1
    if batch >= 128:
        np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)
    assert_matches_cpu(net, x, outs[0].outputs)
