"""dag_lane (spdnn.dag.cuda.choose_lane_stream, spdnn.dag.lane_stream, kernels/dag_levels.cu): its
stream followed on the CPU word by word (no GPU needed), and on the GPU against cuda-warp (bit for
bit where the warp plan sums in edge order) and the CPU engines.

The emulation runs what every thread does, in the kernel's order, for all columns at once (the
threads share nothing but the structure and take the same path): chunk by chunk, the far values
of the next chunk issued, then each bundle's steps read from the stream's word offsets into
shared memory (ring, far buffers, zero row), then its nodes' stores. It checks what the kernel
relies on but cannot check itself: a far buffer holds the chunk it is read for and its values did
not change between the issue and the read (a cp.async may read late); each step's address holds
the source the edge names (its ring place holds that row, its far entry that row's slot), a
padded step reads the zero row with weight 0; each node is stored at its own ring place; every
chunk fits its staging buffer.
"""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.cuda import choose_lane_stream, lane_shared_bytes, warp_plan
from spdnn.dag.generate import generate, random_inputs
from spdnn.dag.lane_stream import LANE_THREADS, LaneStream, bundle_layout
from spdnn.dag.levels import levelise
from spdnn.dag.liveness import plan_values
from spdnn.dag.network import OUTPUT
from spdnn.dag.network import activate as act
from spdnn.dag.shapes import deep_narrow, neat
from spdnn.dag.validate import compare_outputs

from .test_dag_walk import _engine, assert_matches_cpu, emulate_plan, gpu_outputs, reference


def emulate_lane_launch(lt, st: LaneStream, seg: int, net, values, written) -> None:
    """One dag_lane launch over run `seg`, every column of `values` at once."""
    t, k, w = lt.walk, lt.walk.ring, st.words
    b0, b1 = (int(b) for b in lt.segs[seg])
    rows_of_ring = st.ring_words // LANE_THREADS
    smem = {}  # shared-memory row (word offset / 32) -> the columns' values
    ring_row = np.full(k, -1)  # which network row each ring place holds
    far_row = {}  # far-buffer row -> network slot it holds
    pending: list = [None, None]

    def chunk(i):
        c0, n = (int(v) for v in st.chunk_words[i])
        assert 0 < n <= st.cap_words and n % 4 == 0, f"chunk {i}: {n} words, buffers of {st.cap_words}"
        return w[c0 : c0 + n]

    def issue(i):  # chunk i's far values, copied by each thread for its column
        c = chunk(i)
        slots = c[c[2] : c[2] + c[1]]
        assert c[1] <= st.far_cap
        pending[i % 2] = (i, slots, values[slots].copy())

    def addr_row(a: int) -> int:
        assert a % LANE_THREADS == 0
        return a // LANE_THREADS

    issue(b0)
    row = int(t.info[lt.bounds[b0]][0])  # nodes come in row order
    for i in range(b0, b1):
        got, slots, copied = pending[i % 2]
        assert got == i, "a chunk read another chunk's far buffer"
        # a cp.async may read any time up to the wait at the start of chunk i
        assert np.array_equal(values[slots], copied, equal_nan=True), f"far rows rewritten before chunk {i}"
        base = rows_of_ring + (i % 2) * st.far_cap
        for f, sl in enumerate(slots):
            smem[base + f], far_row[base + f] = copied[f], int(sl)
        if i + 1 < b1:
            issue(i + 1)
        c = chunk(i)
        n_groups = int(c[0])
        heads = 4 + 4 * n_groups
        for gi in range(n_groups):  # the warps run a group's bundles in any order: stores wait
            n_bundles, first = int(c[4 + 4 * gi]), int(c[5 + 4 * gi])
            reads, stores = set(), []
            for b in range(first, first + n_bundles):
                width, steps, rec, nd = (int(v) for v in c[heads + 4 * b : heads + 4 * b + 4])
                assert 1 <= width <= 4
                q = 4 if width == 3 else width  # a step of 3 is laid out as one of 4
                acc = np.zeros((width, values.shape[1]), np.float32)
                for p in range(width):
                    r = row + p
                    lo, hi = int(net.indptr[r]), int(net.indptr[r + 1])
                    assert hi - lo <= steps
                    for s in range(steps):
                        a, wbits = int(c[rec + 2 * q * s + p]), c[rec + 2 * q * s + q + p]
                        if s >= hi - lo:  # padding: the zero row, weight 0
                            assert a == st.zero_word and wbits == 0
                            continue
                        src, qrow = int(net.sources[lo + s]), addr_row(a)
                        if qrow < rows_of_ring:
                            assert ring_row[qrow] == src, f"ring place {qrow} holds {ring_row[qrow]}, not {src}"
                            reads.add(qrow)
                        else:
                            assert far_row[qrow] == t.slot[src], f"far entry {qrow}: slot {far_row[qrow]}, not {src}'s"
                        acc[p] = acc[p] + np.int32(wbits).view(np.float32) * smem[qrow]
                for p in range(width):
                    place, dst, bias_bits, code = (int(v) for v in c[nd + 4 * p : nd + 4 * p + 4])
                    z = act(acc[p] + np.int32(bias_bits).view(np.float32), code)
                    assert place == (row % k) * LANE_THREADS, f"row {row} stored at {place}"
                    stores.append((row, place, dst, z))
                    row += 1
            for r, place, dst, z in stores:
                assert addr_row(place) not in reads, f"row {r} overwrites ring place {place} its group reads"
                smem[addr_row(place)], ring_row[r % k] = z, r
                if dst >= 0:
                    values[dst] = z
                written[r] += 1


def emulate_network(net, x, shared_limit=232448, free=True, caps=None, warps=4, step_block=1):
    """The engine's plan on a network: choose_lane_stream's runs emulated, the other groups computed
    plainly into the same value slots. Returns (outputs, tables, walked, stream)."""
    batch = x.shape[0]
    plan = warp_plan(net.level_ptr, net.indptr, batch)
    vp = plan_values(net, free)
    chosen = choose_lane_stream(
        net, plan, vp.slot, shared_limit, *([caps] if caps else []), warps=warps, step_block=step_block
    )
    assert chosen is not None
    tables, st, walked = chosen
    assert st.shared_bytes() <= shared_limit
    out = emulate_plan(
        net,
        x,
        plan,
        vp,
        walked,
        lambda seg, values, ld, written: emulate_lane_launch(tables, st, seg, net, values, written),
    )
    return out, tables, walked, st


def test_bundle_layout_one_bundle_a_warp():
    """Four warps: groups of up to 4 nodes one node a bundle, up to 16 four bundles as even as can be,
    larger ones bundles of at most 4; consecutive nodes."""
    sizes = [1, 3, 5, 7, 0, 9, 16, 17]
    bundle, place, width = bundle_layout(np.array(sizes), warps=4)
    assert width.tolist() == [1, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 1, 3, 2, 2, 2, 4, 4, 4, 4, 4, 4, 3, 3, 3]
    assert np.bincount(bundle).tolist() == width.tolist()
    assert np.all(np.diff(bundle) >= 0)  # consecutive nodes
    assert bundle.tolist()[4:9] == [4, 4, 5, 6, 7] and place.tolist()[4:9] == [0, 1, 0, 0, 0]


@pytest.mark.parametrize("batch, caps", [(1, None), (5, (8, 32, 96, 32)), (130, (3, 16, 80, 32))])
def test_lane_emulated_deep_narrow(batch, caps):
    """A deep, narrow network walked in one run (default chunks, and small ones: many chunk turns)."""
    net = levelise(deep_narrow(6000, seed=batch))
    assert net.n_levels > 120
    x = random_inputs(net.n_inputs, batch, seed=3)
    out, tables, walked, st = emulate_network(net, x, caps=caps)
    t = tables.walk
    assert st.bundles < net.n_nodes - net.n_inputs  # some nodes summed together
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
        out, tables, _, _ = emulate_network(net, x, shared_limit=limit, free=free, caps=caps)
        assert tables.walk.ring <= 40 and (~tables.walk.near).mean() > 0.2
        assert compare_outputs(out, reference(net, x)).passed


def test_lane_chunks_refuse_far_sources_too_close():
    """A far source written in the chunk just before its reader's cannot be copied in time: with a one-row
    ring (every source far) no run is served; every group must also fit a chunk."""
    from spdnn.dag.cuda import lane_chunks, row_groups, walk_tables

    net = levelise(deep_narrow(3000, seed=1))
    lp = net.level_ptr
    runs = np.array([[1, net.n_levels]])
    args = (net.indptr, net.sources, net.weights, lp, runs, net.bias, net.activation, np.zeros(net.n_levels, np.int64))
    group_of = row_groups(lp, net.n_nodes)
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
    out, _, walked, _ = emulate_network(net, x)
    plan = warp_plan(net.level_ptr, net.indptr, 40)
    assert 0 < len(walked) < len(plan.segments)
    assert compare_outputs(out, reference(net, x)).passed


def test_lane_takes_no_wide_network():
    wide = levelise(generate("pruned", 50_000, seed=1))  # no group small enough for one block a tile
    plan = warp_plan(wide.level_ptr, wide.indptr, 100)
    assert choose_lane_stream(wide, plan, plan_values(wide).slot, 232448) is None


def test_lane_option_checked():
    """walk=True is refused with the lane kernel before any device is opened."""
    from spdnn.dag.cuda import DagCudaEngine

    with pytest.raises(ValueError, match="walk=True"):
        DagCudaEngine(kernel="lane", walk=True)
    for warps in (0, 9):
        with pytest.raises(ValueError, match="lane_warps must be in 1 .. 8"):
            DagCudaEngine(kernel="lane", lane_warps=warps)


@pytest.mark.parametrize("warps", [1, 8])
def test_lane_emulated_other_warp_counts(warps):
    """One warp (every bundle on it, up to 4 nodes each) and eight (one node a bundle up to 8 nodes)."""
    net = levelise(deep_narrow(5000, seed=warps))
    x = random_inputs(net.n_inputs, 7, seed=2)
    out, _, _, st = emulate_network(net, x, warps=warps)
    assert st.warps == warps
    if warps == 1:  # bundles of up to 4 nodes: fewer bundles than nodes
        assert st.bundles < (net.n_nodes - net.n_inputs) / 2
    assert compare_outputs(out, reference(net, x)).passed


@pytest.mark.parametrize("step_block", [4, 8])
def test_lane_steps_padded_to_blocks_same_bits(step_block):
    """Steps padded to a multiple of the build's block (weight 0 from the zero row): every bundle's
    step count a multiple, room for one block read ahead, and the same outputs bit for bit."""
    net = levelise(deep_narrow(5000, seed=3))
    x = random_inputs(net.n_inputs, 7, seed=2)
    plain, *_, st1 = emulate_network(net, x)
    out, _, _, st = emulate_network(net, x, step_block=step_block)
    assert st.step_block == step_block and st.cap_words >= st1.cap_words + 8 * step_block
    for c0, n in st.chunk_words:  # every bundle header's steps (its second word) a multiple
        if n == 0:
            continue
        chunk = st.words[c0 : c0 + n]
        ng = int(chunk[0])
        nb = int(chunk[4 : 4 + 4 * ng : 4].sum())  # bundles of the chunk's groups
        steps = chunk[4 + 4 * ng + 1 : 4 + 4 * ng + 4 * nb : 4]
        assert steps.size == nb and np.all(steps % step_block == 0)
    assert all(np.array_equal(a, b) for a, b in zip(out, plain))
    assert compare_outputs(out, reference(net, x)).passed


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


@pytest.mark.gpu
@pytest.mark.parametrize(("warps", "step_block"), [(1, 1), (2, 4), (8, 1), (4, 1), (8, 4), (4, 8)])
@pytest.mark.parametrize("batch", [1, 200])
def test_gpu_lane_builds_same_bits(warps, step_block, batch):
    """The warps only split a group's bundles and a step block only pads the steps with +0: every
    build gives the default's outputs bit for bit."""
    net = levelise(deep_narrow(60_000, seed=warps))
    x = random_inputs(net.n_inputs, batch, seed=5)
    built = _engine("cuda-lane", lane_warps=warps, lane_step_block=step_block)
    outs = gpu_outputs(net, x, built, _engine("cuda-lane"))
    assert outs[0].details["lane_warps"] == warps and outs[0].details["lane_step_block"] == step_block
    np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)


@pytest.mark.gpu
def test_gpu_lane_says_when_nothing_is_walked():
    """A network of wide groups only has no run of small groups for dag_lane: cuda-lane runs it all on
    cuda-warp's plan and says so in its details (not silently), with cuda-warp's outputs."""
    from spdnn.dag.cuda import NO_WALK_NOTE
    from spdnn.dag.generate import pruned_layered

    net = levelise(pruned_layered(60_000, seed=2, depth=3))  # groups of 100-700 nodes
    plan = warp_plan(net.level_ptr, net.indptr, 200)
    assert choose_lane_stream(net, plan, plan_values(net).slot, 232448) is None  # (the host's side of it)
    x = random_inputs(net.n_inputs, 200, seed=5)
    outs = gpu_outputs(net, x, _engine("cuda-lane"), _engine("cuda-warp"))
    d = outs[0].details
    assert d["walk_kernel"] is None and d["walk_segments"] == 0 and d["walk_note"] == NO_WALK_NOTE
    np.testing.assert_array_equal(outs[0].outputs, outs[1].outputs)


@pytest.mark.parametrize(("option", "value"), [("lane_step_block", 3), ("lane_warps", 9), ("kernel", "lanes")])
def test_lane_build_options_checked_before_the_device(option, value):
    """A build dag_levels.cu does not have is refused by name, before any GPU is looked for."""
    from spdnn.dag.cuda import DagCudaEngine

    with pytest.raises(ValueError, match=option):
        DagCudaEngine(**{"kernel": "lane", option: value})


def test_lane_stream_shrinks_the_ring_by_whole_rows():
    """With one warp the stream's chunks outgrow choose_lane's estimate by a few bytes; the ring must
    give way by whole rows until it fits (by the bytes over alone it never shrank: no lane plan)."""
    net = levelise(deep_narrow(60_000, seed=1))
    plan = warp_plan(net.level_ptr, net.indptr, 200)
    limit = 232448
    chosen = choose_lane_stream(net, plan, plan_values(net).slot, limit, warps=1)
    assert chosen is not None
    assert chosen[1].warps == 1 and chosen[1].shared_bytes() <= limit
