"""GPU engines for DAG networks: pycuda kernels per dependency group (kernels/dag_levels.cu).

pycuda is imported only when an engine is constructed; without it or without a usable GPU
the constructor raises EngineUnavailable (never a silent fallback).

kernel="thread": the paper's design, one thread per neuron (and input vector), one launch
  per group.
kernel="warp": TPN = LB x LE lanes per neuron and tile of input vectors (see the .cu file).
  The plan, per batch width B (`warp_plan`):
    VEC = 4 (float4 per lane) when B >= 64, else 1; LB = lanes along the batch, the
    smallest power of two with LB * VEC >= B, at most 32; LE = lanes over the edges,
    the power of two nearest half the group's mean in-degree, at most 32 / LB.
    Consecutive groups small enough for one block per tile (at most 1024 / TPN nodes)
    run in one launch with a block barrier between them, so deep, narrow networks do not
    pay a launch per group.
kernel="lane" (engine cuda-lane): the warp plan, with each of its one-block segments (runs of
  small groups) run by dag_lane: blocks of up to 32 input vectors (lane t of every warp on vector
  t; narrower batches leave lanes idle rather than pack the warps into one) and four warps that share
  them, walking the run group by group, its recent values in a shared-memory ring, older ones copied
  ahead, the structure staged by chunks of groups (LaneTables, lane_chunks) as a stream the host
  built (lane_stream.py: each source a shared-memory offset, a group's nodes in bundles split over
  the warps); one block barrier a group, no shuffle. Every node is summed in edge order (LE = 1):
  bit for bit cuda-warp wherever the warp plan has LE = 1 (from 128 input vectors on). For deep,
  narrow networks: 9.5 ms against cuda-warp's 51.3 on deep-narrow at 1e6 edges, batch 1000, on an
  H200 (docs/dag.md), and as fast as cuda-warp on the wide shapes (their groups go to dag_warp):
  the `auto` engine.
kernel="walk" (engine cuda-walk; kernel="warp", walk=True): each of the warp plan's one-block
  segments (runs of small groups) goes to dag_walk instead: one block per tile of `walk_tile`
  input vectors walks the run with the values of its last rows, the groups' structure and the
  older values they read staged in shared memory (`walk_tables`; the .cu file says how). Same
  LE per group as the warp plan, so the outputs are bit for bit cuda-warp's. It was written to
  take the dependent global loads out of deep-narrow's 24,963 groups (cuda-warp: one launch,
  about 2 us a group on an H200); measured there it is not faster (54.9 against 51.3 ms at
  batch 1000, whatever the tile, block size or prefetch depth), so it is off unless asked for
  (docs/dag.md: the cost per group is not those loads).
  walk_vec1=True gives the walk the batch-1 plan's lanes at any batch (VEC 1, tiles of one vector,
  LE lanes over each node's edges, so a group spreads over the warp), walk_ring_bytes its ring's
  size: measured on deep-narrow, 1.7-1.8 us a group whatever the ring (no faster: docs/dag.md).
Values are node-major (a row holds the batch, padded to `ld`), so the lanes of a neuron read
one contiguous piece of each source row. Rows are value slots (liveness.py): a node's row is
reused once no later node reads it (`free_values=False`: one row per node). Batches wider than GPU memory
allows are run in chunks of columns.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines.device import DeviceBuffers, compile_module, open_device
from .engine import DagEngine, DagResult, dense_inputs
from .lane_stream import LANE_THREADS, LANE_WARPS, LaneStream, lane_stream
from .liveness import plan_values
from .network import OUTPUT, DagNetwork

LANE_MAX_WARPS = 8  # the most warps a build of dag_lane takes (blocks of up to 256 threads)
LANE_STEP_BLOCKS = (1, 2, 4, 8)  # dag_lane's builds of its sums: steps a block (1: a loop unrolled by 4)
# cuda-lane's default: deep-narrow 1e6 edges on an H200, 9.40 / 9.54 ms at batch 1 / 1000 against
# 11.14 / 11.07 with 1 (8: 10.25 / 10.70; docs/dag.md)
LANE_STEP_BLOCK = 4

KERNEL_FILE = Path(__file__).parent / "kernels" / "dag_levels.cu"
NO_WALK_NOTE = "no run of small groups fits the walk's plan: every group ran on cuda-warp's plan"
log = logging.getLogger(__name__)
BLOCK = 256  # threads per block of a one-group launch
FUSED_BLOCK = 1024  # threads per block of a multi-group segment
WALK_HEADER = 8  # words of a staged group before its node records (dag_levels.cu)
WALK_RING_BYTES = 1 << 16  # at most this much shared memory for the ring of recent rows
WALK_MAX_THREADS = 256  # dag_walk's __launch_bounds__


def _pow2_ceil(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, x))))


@dataclass
class Segment:
    l0: int  # first group (level)
    l1: int  # one past the last group
    log_le: int
    grid_x: int
    block: int


@dataclass
class WarpPlan:
    vec: int
    log_lb: int
    tile: int  # input vectors per tile: LB * VEC
    segments: list[Segment]


def warp_plan(level_ptr: np.ndarray, indptr: np.ndarray, batch: int) -> WarpPlan:
    """Launch plan of the warp kernel for a batch of `batch` input vectors (see module docstring)."""
    vec = 4 if batch >= 64 else 1
    lb = min(32, _pow2_ceil(batch / vec))
    log_lb = lb.bit_length() - 1
    segments: list[Segment] = []
    run: list[tuple[int, int]] = []  # pending small groups: (level, log_le)

    def flush() -> None:
        if run:
            log_le = max(le for _, le in run)
            segments.append(Segment(run[0][0], run[-1][0] + 1, log_le, 1, FUSED_BLOCK))
            run.clear()

    for g in range(1, level_ptr.size - 1):
        lo, hi = int(level_ptr[g]), int(level_ptr[g + 1])
        nodes = hi - lo
        mean = (int(indptr[hi]) - int(indptr[lo])) / max(1, nodes)
        le = min(32 // lb, _pow2_ceil(mean / 2))
        log_le = le.bit_length() - 1
        tpn = lb * le
        if nodes <= FUSED_BLOCK // tpn:
            run.append((g, log_le))
            continue
        flush()
        per_block = (BLOCK // 32) * (32 // tpn)
        segments.append(Segment(g, g + 1, log_le, min(1 << 20, math.ceil(nodes / per_block)), BLOCK))
    flush()
    return WarpPlan(vec, log_lb, lb * vec, segments)


@dataclass
class WalkTables:
    """dag_walk's tables for runs of groups (`segments`), as the .cu file describes them.

    Groups are level_ptr's: a network's levels, or a blocked population's member groups.
    slot[r] is row r's global value row (-1: none; nodes[r, 2] is -1 also where no reader
    needs it there), n_slots the rows of the global value buffer.
    """

    info: np.ndarray  # int32[groups + 1, 4]: first row, first edge, first far entry, log_le
    nodes: np.ndarray  # int32[rows, 4]: first edge (relative to its group's), bias bits, slot or -1, act | count << 8
    edges: np.ndarray  # int32[edges, 2]: code (ring row >= 0, or -(far entry + 1)), weight bits
    far: np.ndarray  # int32[far entries]: global slot of each group's far sources
    slot: np.ndarray  # int32[rows]
    n_slots: int
    ring: int  # rows the ring holds
    depth: int  # far values are copied this many groups ahead, the structure twice as many
    segments: np.ndarray  # int64[S, 2]: the runs (g0, g1) dag_walk takes
    caps: np.ndarray  # int64[S, 3]: per run, the most nodes, edges and far entries of one of its groups
    near: np.ndarray  # bool[edges]: read from the ring
    far_rows: np.ndarray | None = None  # int64[far entries]: the row each far entry copies

    def shared_bytes(self, caps: np.ndarray, tile: int) -> int:
        """Dynamic shared memory of a launch whose groups stay within caps (nodes, edges, far)."""
        node_cap, edge_cap, far_cap = (int(c) for c in caps)
        words = (WALK_HEADER + 4 * node_cap + 2 * edge_cap + far_cap + 3) // 4 * 4
        d = self.depth
        up4 = lambda n: (n + 3) // 4 * 4  # noqa: E731  (each section starts on 16 bytes, as in the kernel)
        return 4 * (up4(self.ring * tile) + up4((d + 1) * far_cap * tile) + (2 * d + 1) * words)


def row_groups(level_ptr: np.ndarray, rows: int) -> np.ndarray:
    """Each row's group (level_ptr's), -1 for rows before level_ptr[0] (a population's inputs)."""
    group = np.full(rows, -1, np.int64)
    group[level_ptr[0] : level_ptr[-1]] = np.repeat(np.arange(level_ptr.size - 1), np.diff(level_ptr))
    return group


def walk_tables(
    indptr: np.ndarray,
    sources: np.ndarray,
    weights: np.ndarray,
    level_ptr: np.ndarray,
    segments: np.ndarray,
    bias: np.ndarray,
    activation: np.ndarray,
    log_le: np.ndarray,
    keep: np.ndarray,
    ring: int,
    depth: int,
    slot: np.ndarray | None = None,
) -> WalkTables:
    """Tables for the runs `segments` ((g0, g1) pairs of group indices into level_ptr) that dag_walk
    can take with a ring of `ring` rows; runs with an edge it cannot serve are left out.

    An edge whose reader is in a run reads the ring if its source row lies in the run and no later
    row up to the end of the reader's group took its ring place; otherwise it is "far", which
    needs its source written before the run or depth + 1 groups or more before the reader (copied
    `depth` groups ahead, after the barrier that publishes the group before). A run with a far
    edge closer than that is not taken. Rows keep (outputs, inputs) and every row read other than
    from the ring are written to global memory: at `slot` (a value plan's) or, when slot is None,
    at rows numbered in order among them (the inputs first, so they must be in keep).
    `log_le[g]`: the LE of group g (the warp plan's), so the sums are the warp kernel's.
    """
    if not 1 <= depth <= 8:
        raise ValueError(f"depth must be in 1 .. 8 (cp.async.wait_group takes an immediate), not {depth}")
    rows, n_groups = int(bias.size), level_ptr.size - 1
    level_ptr = level_ptr.astype(np.int64)
    indptr = indptr.astype(np.int64)
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    group = row_groups(level_ptr, rows)
    target = np.repeat(np.arange(rows), np.diff(indptr))
    reader = group[target]
    src = sources.astype(np.int64)
    k = ring

    def classify(segs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        seg_of = np.full(n_groups + 1, -1, np.int64)
        for i, (g0, g1) in enumerate(segs):
            seg_of[g0:g1] = i
        run = seg_of[reader]
        walked = run >= 0
        row0 = np.where(walked, level_ptr[segs[np.maximum(run, 0), 0]] if len(segs) else 0, 0)
        near = walked & (src >= row0) & (src + k >= level_ptr[reader + 1])
        far = walked & ~near
        servable = (src < row0) | (group[src] <= reader - depth - 1)
        return run, near, far, far & ~servable

    run, near, far, bad = classify(segments)
    if bad.any():
        ok = np.bincount(run[bad], minlength=len(segments)) == 0
        segments = segments[ok]
        run, near, far, bad = classify(segments)
    # far entries: each group's distinct far sources, in row order
    key = np.unique(reader[far] * rows + src[far])
    far_group, far_src = key // rows, key % rows
    far_ptr = np.searchsorted(far_group, np.arange(n_groups + 1))
    entry = np.searchsorted(key, reader[far] * rows + src[far])
    code = np.zeros(src.size, np.int64)
    code[near] = src[near] % k
    code[far] = -(entry - far_ptr[reader[far]] + 1)
    need = keep.astype(bool).copy()
    need[src[~near]] = True
    if slot is None:
        slot = np.where(need, np.cumsum(need) - 1, -1).astype(np.int32)
        n_slots = int(need.sum())
    else:
        slot = slot.astype(np.int32)
        n_slots = int(slot.max()) + 1 if slot.size else 0
    first_edge = indptr[level_ptr]  # per group
    counts = np.diff(indptr)
    if counts.size and counts.max() >= 1 << 23:
        raise ValueError("dag_walk takes nodes of fewer than 2^23 incoming edges")
    nodes = np.zeros((rows, 4), np.int32)
    computed = group >= 0
    nodes[computed, 0] = indptr[:-1][computed] - first_edge[group[computed]]
    nodes[:, 1] = np.ascontiguousarray(bias, dtype=np.float32).view(np.int32)
    nodes[:, 2] = np.where(need, slot, -1)
    nodes[:, 3] = activation.astype(np.int32) | (counts << 8).astype(np.int32)
    edges = np.empty((src.size, 2), np.int32)
    edges[:, 0] = code
    edges[:, 1] = np.ascontiguousarray(weights, dtype=np.float32).view(np.int32)
    info = np.zeros((n_groups + 1, 4), np.int32)
    info[:, 0], info[:, 1], info[:, 2] = level_ptr, first_edge, far_ptr
    info[:n_groups, 3] = log_le
    sizes = np.stack([np.diff(level_ptr), np.diff(first_edge), np.diff(far_ptr)], axis=1)
    caps = np.array([sizes[g0:g1].max(axis=0) for g0, g1 in segments], np.int64).reshape(-1, 3)
    return WalkTables(
        info, nodes, edges, slot[far_src].astype(np.int32), slot, n_slots, ring, depth, segments, caps, near, far_src
    )


def fit_walk(build, runs: np.ndarray, rings: list[int], size, limit: int) -> WalkTables | None:
    """build(runs, ring)'s tables for the runs whose launch fits `limit` bytes of shared memory
    (size(tables, caps): a launch's bytes), with the first ring size of `rings` under which any
    does; None if none does."""
    for k in rings:
        tables = build(runs, k)
        fits = np.array([size(tables, c) <= limit for c in tables.caps], bool)
        if fits.any():
            return tables if fits.all() else build(tables.segments[fits], k)
    return None


def choose_walk(
    net: DagNetwork,
    plan: WarpPlan,
    slot: np.ndarray,
    walk_tile: int,
    depth: int,
    shared_limit: int,
    lanes: WarpPlan | None = None,
    ring_bytes: int = WALK_RING_BYTES,
) -> tuple[WalkTables, int, int, dict[int, int]] | None:
    """The warp plan's one-block segments (runs of small groups) that dag_walk can run within
    shared_limit: (tables, log_lb, tile, {segment index: row of tables.segments}), or None.
    `slot`: the value plan's rows, which the warp kernel's segments share. `lanes`: the plan
    whose VEC and per-group LE the walk takes (default `plan`; a batch-1 plan gives one vector a
    lane and the most lanes over each node's edges). The ring holds at most ring_bytes."""
    chosen = [i for i, s in enumerate(plan.segments) if s.grid_x == 1]
    if not chosen:
        return None
    lanes = lanes or plan
    log_lb, tile = walk_layout(lanes.vec, lanes.log_lb, walk_tile)
    log_le = np.zeros(net.n_levels, np.int64)
    for s in lanes.segments:
        log_le[s.l0 : s.l1] = s.log_le
    runs = np.array([(plan.segments[i].l0, plan.segments[i].l1) for i in chosen], np.int64)
    lp = net.level_ptr
    longest = int((lp[runs[:, 1]] - lp[runs[:, 0]]).max())

    def build(segs: np.ndarray, ring: int) -> WalkTables:
        return walk_tables(
            net.indptr,
            net.sources,
            net.weights,
            lp,
            segs,
            net.bias,
            net.activation,
            log_le,
            net.role == OUTPUT,
            ring,
            depth,
            slot=slot,
        )

    size = lambda t, caps: t.shared_bytes(caps, tile)  # noqa: E731
    tables = fit_walk(build, runs, ring_sizes(longest, tile, ring_bytes), size, shared_limit)
    if tables is None:
        return None
    return tables, log_lb, tile, _walked_segments(plan, chosen, tables)


def _walked_segments(plan: WarpPlan, chosen: list[int], tables: WalkTables) -> dict[int, int]:
    """{warp-plan segment index: row of tables.segments} for the chosen segments the tables took."""
    by_start = {int(g0): r for r, (g0, _) in enumerate(tables.segments)}
    return {i: by_start[plan.segments[i].l0] for i in chosen if plan.segments[i].l0 in by_start}


LANE_CAPS = (64, 256, 1024, 128)  # dag_lane's chunk: at most these groups, nodes, edges, far entries


@dataclass
class LaneTables:
    """dag_lane's tables: walk_tables' (LE = 1 everywhere) and the chunks of each run.

    segs[s] = (b0, b1): run s is chunks b0 .. b1 - 1, chunk i being groups bounds[i] .. bounds[i + 1] - 1.
    """

    walk: WalkTables
    bounds: np.ndarray  # int32
    segs: np.ndarray  # int32[S, 2]
    caps: tuple[int, int, int, int]


def lane_shared_bytes(ring: int, caps: tuple[int, int, int, int]) -> int:
    """choose_lane's estimate of dag_lane's shared memory, which sizes the ring: the ring, two
    far-value buffers and three buffers of a chunk's structure at the caps, unpadded. What a launch
    takes is its stream's (LaneStream.shared_bytes); choose_lane_stream shrinks the ring to fit it."""
    groups, nodes, edges, far = caps
    words = (4 * (groups + 1) + 4 * nodes + 2 * edges + far + 3) // 4 * 4
    return 4 * ((ring * LANE_THREADS + 3) // 4 * 4 + 2 * far * LANE_THREADS + 3 * words)


def lane_chunks(t: WalkTables, caps: tuple[int, int, int, int], group_of: np.ndarray) -> tuple[list, list]:
    """Chunks of each run of t (consecutive groups within caps) and the runs dag_lane can serve:
    ([bounds of each served run], [its row in t.segments]). A run is served if every group fits a
    chunk and every far source of chunk i is written before chunk i - 1 starts (before the run,
    for its first two chunks): its values are copied then. group_of[row]: a row's group (-1: none)."""
    cap_g, cap_n, cap_e, cap_f = caps
    info = t.info.astype(np.int64)
    size = np.diff(info[:, :3], axis=0)  # per group: nodes, edges, far entries
    far_group = np.repeat(np.arange(size.shape[0]), size[:, 2])  # the group of each far entry
    src_group = group_of[t.far_rows]
    sizes = size.tolist()  # Python ints: the greedy walk below runs group by group
    served, rows = [], []
    for r, (g0, g1) in enumerate(t.segments.tolist()):
        bounds, start, n, e, f = [g0], g0, 0, 0, 0
        ok = True
        for g in range(g0, g1):
            gn, ge, gf = sizes[g]
            if gn > cap_n or ge > cap_e or gf > cap_f:
                ok = False
                break
            if g - start + 1 > cap_g or n + gn > cap_n or e + ge > cap_e or f + gf > cap_f:
                bounds.append(g)
                start, n, e, f = g, 0, 0, 0
            n, e, f = n + gn, e + ge, f + gf
        if not ok:
            continue
        bounds.append(g1)
        b = np.array(bounds)
        lo, hi = info[b[0], 2], info[b[-1], 2]
        chunk = np.searchsorted(b, far_group[lo:hi], side="right") - 1
        before = b[np.maximum(chunk - 1, 0)]  # far values of chunk i are copied when chunk i - 1 starts
        if np.all(src_group[lo:hi] < before):
            served.append(b)
            rows.append(r)
    return served, rows


def choose_lane(
    net: DagNetwork, plan: WarpPlan, slot: np.ndarray, shared_limit: int, caps: tuple[int, int, int, int] = LANE_CAPS
) -> tuple[LaneTables, dict[int, int]] | None:
    """The warp plan's one-block segments (runs of small groups) that dag_lane can run within
    shared_limit: (its tables, {segment index: row of tables.segs}), or None. `slot`: the value
    plan's rows, which the other segments share. The ring is the largest that fits beside the chunk
    buffers, halved until some run can be served."""
    chosen = [i for i, s in enumerate(plan.segments) if s.grid_x == 1]
    fixed = lane_shared_bytes(0, caps)
    if not chosen or fixed >= shared_limit:
        return None
    lp = net.level_ptr
    all_runs = np.array([(plan.segments[i].l0, plan.segments[i].l1) for i in chosen], np.int64)
    longest = int((lp[all_runs[:, 1]] - lp[all_runs[:, 0]]).max())
    ones = np.zeros(net.n_levels, np.int64)  # LE = 1: each thread sums a node's edges in order
    group_of = row_groups(lp, net.n_nodes)
    ring = min(longest, (shared_limit - fixed) // (4 * LANE_THREADS))
    while ring >= 1:
        runs = all_runs
        for _ in range(3):  # served runs, then the tables again for those only (what others keep changes)
            t = walk_tables(
                net.indptr, net.sources, net.weights, lp, runs, net.bias, net.activation, ones,
                net.role == OUTPUT, ring, 1, slot=slot,
            )  # fmt: skip
            served, rows = lane_chunks(t, caps, group_of)
            if not rows or len(rows) == len(t.segments):
                break
            runs = t.segments[rows]
        if rows and len(rows) == len(t.segments):
            return lane_tables_from(t, served, caps), _walked_segments(plan, chosen, t)
        ring //= 2
    return None


def choose_lane_stream(
    net: DagNetwork,
    plan: WarpPlan,
    slot: np.ndarray,
    shared_limit: int,
    caps: tuple[int, int, int, int] = LANE_CAPS,
    warps: int = LANE_WARPS,
    step_block: int = 1,
) -> tuple[LaneTables, LaneStream, dict[int, int]] | None:
    """choose_lane's runs with dag_lane's stream (lane_stream) within shared_limit: (tables, stream,
    {segment index: row of tables.segs}), or None. choose_lane sizes the ring for its own estimate
    of the staging buffers; where the stream's chunks are larger, the ring gives way."""
    limit = shared_limit
    for _ in range(4):
        got = choose_lane(net, plan, slot, limit, caps)
        if got is None:
            return None
        tables, walked = got
        stream = lane_stream(tables, warps, step_block)
        over = stream.shared_bytes() - shared_limit
        if over <= 0:
            return tables, stream, walked
        row = 4 * LANE_THREADS  # the ring gives way by whole rows (by fewer bytes it might not shrink)
        limit -= -(-over // row) * row
    return None


@dataclass
class WalkPlan:
    """The warp plan's segments that dag_walk runs (by index), with its tables on the device."""

    tables: WalkTables
    log_lb: int  # lanes along the batch: tile = (1 << log_lb) * vec
    tile: int
    threads: int
    walked: dict[int, int]  # warp-plan segment index -> row of tables.segments
    shared: list[int]  # dynamic shared memory per walked segment (bytes)
    device: dict  # the tables' device arrays
    vec: int = 4  # dag_walk's VEC (1 or 4)
    lane_tables: LaneTables | None = None  # set: dag_lane runs the segments (tables is its walk part)
    lane_stream: LaneStream | None = None  # dag_lane's stream of lane_tables

    @property
    def lane(self) -> bool:
        return self.lane_tables is not None


def walk_layout(vec: int, log_lb: int, walk_tile: int) -> tuple[int, int]:
    """(log_lb, tile) of dag_walk: tiles of walk_tile input vectors, never wider than the warp plan's."""
    lb = max(1, min(1 << log_lb, walk_tile // vec))
    lb = 1 << (lb.bit_length() - 1)
    return lb.bit_length() - 1, lb * vec


def ring_sizes(rows: int, tile: int, ring_bytes: int = WALK_RING_BYTES) -> list[int]:
    """Ring sizes to try, largest first: `rows` (a run's rows: then every source in the run is near)
    or what ring_bytes holds, then halved down to one row."""
    k = max(1, min(rows, ring_bytes // (4 * tile)))
    sizes = []
    while k >= 1:
        sizes.append(k)
        k //= 2
    return sizes


class GatherLauncher:
    """The output rows' values copied into a dense (outputs, ld) block, one launch (dag_gather)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, stream, values, ld: int, d_rows, n_rows: int, out) -> None:
        total = n_rows * ld
        self.fn.prepared_async_call(
            (min(65535, math.ceil(total / 256)), 1),
            (256, 1, 1),
            stream,
            values,
            np.int32(ld),
            d_rows,
            np.int32(n_rows),
            out,
        )


def run_chunks(engine, x: np.ndarray, chunk: int, n_out: int, layout, launch) -> tuple[np.ndarray, float, int]:
    """Shared chunk loop of the GPU engines: per chunk of columns, inputs staged into rows
    0 .. inputs - 1 of the value buffer, `launch(values, ld, cols, stream)` (returns its launch
    count) and the gather timed with CUDA events, the outputs copied back. layout(cols) gives
    (ld, value rows, the output rows' device array). Returns (outputs, seconds, launches)."""
    cuda = engine.cuda
    batch = x.shape[0]
    outputs = np.empty((batch, n_out), dtype=np.float32)
    stream = cuda.Stream()
    start, end = cuda.Event(), cuda.Event()
    seconds, launches = 0.0, 0
    for c0 in range(0, batch, chunk):
        cols = min(chunk, batch - c0)
        ld, n_rows, d_out_rows = layout(cols)
        values = engine._buffers.get("values", n_rows * ld * 4)
        out = engine._buffers.get("out", max(1, n_out) * ld * 4)
        staged = np.zeros((x.shape[1], ld), dtype=np.float32)
        staged[:, :cols] = x[c0 : c0 + cols].T
        cuda.memcpy_htod(values, staged)  # inputs are rows 0 .. n_inputs - 1
        start.record(stream)
        launches += launch(values, ld, cols, stream)
        if n_out:
            engine._gather(stream, values, ld, d_out_rows, n_out, out)
        end.record(stream)
        end.synchronize()
        seconds += end.time_since(start) / 1e3
        if n_out:
            host = np.empty((n_out, ld), dtype=np.float32)
            cuda.memcpy_dtoh(host, out)
            outputs[c0 : c0 + cols] = host[:, :cols].T
    return outputs, seconds, launches


def walk_device_arrays(cuda, tables: WalkTables) -> dict:
    to = cuda.to_device
    nonempty = lambda a, shape: a if a.size else np.zeros(shape, np.int32)  # noqa: E731
    return {
        "info": to(tables.info),
        "nodes": to(nonempty(tables.nodes, (1, 4))),
        "edges": to(nonempty(tables.edges, (1, 2))),
        "far": to(nonempty(tables.far, 1)),
        "segs": to(tables.segments.astype(np.int32) if tables.segments.size else np.zeros((1, 2), np.int32)),
    }


def launch_walk(
    fn,
    stream,
    grid: tuple[int, int],
    threads: int,
    shared: int,
    values,
    ld: int,
    d: dict,
    seg: int,
    log_lb: int,
    tables: WalkTables,
    caps,
) -> None:
    """One dag_walk launch over tables.segments[seg .. seg + grid[1]) (tiles on x, runs on y)."""
    fn.prepared_async_call(
        grid,
        (threads, 1, 1),
        stream,
        values,
        np.int32(ld),
        int(d["segs"]) + 8 * seg,
        d["info"],
        d["nodes"],
        d["edges"],
        d["far"],
        np.int32(log_lb),
        np.int32(tables.ring),
        np.int32(tables.depth),
        *(np.int32(c) for c in caps),
        shared_size=shared,
    )


def launch_lane(
    fn, stream, grid: tuple[int, int], threads: int, shared: int, values, ld: int, d: dict, seg: int, st: LaneStream
) -> None:
    """One dag_lane launch over runs seg .. seg + grid[1] - 1 (d["lane_segs"], d["chunk_words"] and
    d["stream"] on the device): `threads` columns a block (lane t of each warp on column t) on x,
    runs on y."""
    if not 1 <= threads <= LANE_THREADS:
        raise ValueError(f"dag_lane takes 1 .. {LANE_THREADS} columns a block, not {threads}")
    fn.prepared_async_call(
        grid,
        (LANE_THREADS * st.warps, 1, 1),  # st.warps whole warps share the block's columns
        stream,
        values,
        np.int32(ld),
        int(d["lane_segs"]) + 8 * seg,
        d["chunk_words"],
        d["stream"],
        np.int32(st.ring_words),
        np.int32(st.far_cap),
        np.int32(st.cap_words),
        np.int32(threads),
        shared_size=shared,
    )


def lane_device_arrays(cuda, lt: LaneTables, st: LaneStream) -> dict:
    to = cuda.to_device
    return {"chunk_words": to(st.chunk_words), "stream": to(st.words), "lane_segs": to(lt.segs)}


def lane_tables_from(t: WalkTables, served: list, caps: tuple[int, int, int, int]) -> LaneTables:
    """LaneTables of t's runs from lane_chunks' bounds of each (every run of t served)."""
    sizes = np.array([len(b) for b in served])
    ends = np.cumsum(sizes)
    segs = np.stack([ends - sizes, ends - 1], axis=1).astype(np.int32)
    return LaneTables(t, np.concatenate(served).astype(np.int32), segs, caps)


KERNEL_FORMATS = {  # every kernel of dag_levels.cu and its pycuda argument format
    "dag_thread": "PiiiPPPPPP",
    "dag_warp1": "PiPiiiiPPPPPP",
    "dag_warp4": "PiPiiiiPPPPPP",
    "dag_walk1": "PiPPPPPiiiiii",
    "dag_walk4": "PiPPPPPiiiiii",
    "dag_lane": "PiPPPiiii",
    "dag_population1": "PiPPiiPPPPPP",
    "dag_population4": "PiPPiiPPPPPP",
    "dag_population_ring1": "PiPPiiPPPPPPi",
    "dag_population_ring4": "PiPPiiPPPPPPi",
    "dag_gather": "PiPiP",
}


class CudaDagBase(DagEngine):
    """What the pycuda DAG engines share: the device (opened here, EngineUnavailable without one),
    dag_levels.cu's kernels compiled and prepared, value buffers kept between calls, the output
    gather and the chunk loop (run_chunks)."""

    def __init__(
        self,
        device: int,
        needed_by: str,
        lane_warps: int = LANE_WARPS,
        lane_step_block: int = 1,
        defines: dict[str, int] | None = None,
    ):
        self._device = open_device(device, needed_by=needed_by)
        self.cuda, self.dev, self.arch = self._device.cuda, self._device.dev, self._device.arch
        # dag_lane's warps a block and steps a block of its sums are build constants (the default
        # build: LANE_WARPS and 1, as in the .cu)
        options = ["-O3"] + ([f"-DLANE_WARPS={lane_warps}"] if lane_warps != LANE_WARPS else [])
        options += [f"-DLANE_STEP_BLOCK={lane_step_block}"] if lane_step_block != 1 else []
        options += [f"-D{name}={int(value)}" for name, value in (defines or {}).items()]  # other build constants
        self._module = compile_module(KERNEL_FILE, self.arch, options)
        self._fns = {name: self._module.get_function(name) for name in KERNEL_FORMATS}
        for name, fmt in KERNEL_FORMATS.items():
            self._fns[name].prepare(fmt)
        self._gather = GatherLauncher(self._fns["dag_gather"])
        self._buffers = DeviceBuffers(self.cuda)
        attr = self.cuda.device_attribute.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        self.shared_limit = int(self.dev.get_attribute(attr))
        self._shared_allowed = 48 * 1024  # what a launch may take without the opt-in

    def __del__(self):
        if hasattr(self, "_device"):
            self._device.release()

    def device(self) -> str:
        return self.dev.name()

    def release(self) -> None:
        """Free the value buffers kept between calls."""
        self._buffers.free()

    def _allow_shared(self, nbytes: int) -> None:
        """Let dag_walk, dag_lane and dag_population_ring launches take nbytes of dynamic shared memory
        (above 48 KB needs the opt-in); never lowered, since plans made earlier (other batch widths)
        may still need more."""
        if nbytes > self._shared_allowed:
            for name in ("dag_walk1", "dag_walk4", "dag_lane", "dag_population_ring1", "dag_population_ring4"):
                self._fns[name].set_attribute(self.cuda.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes)
            self._shared_allowed = nbytes


class DagCudaEngine(CudaDagBase):
    """pycuda engine for levelised DAG networks; see the module docstring."""

    def __init__(
        self,
        kernel: str = "warp",
        device: int = 0,
        memory_fraction: float = 0.8,
        max_columns: int | None = None,
        free_values: bool = True,
        walk: bool = False,
        walk_tile: int = 8,
        walk_threads: int = 128,
        walk_depth: int = 4,
        walk_vec1: bool = False,
        walk_ring_bytes: int = WALK_RING_BYTES,
        lane_warps: int = LANE_WARPS,
        lane_step_block: int = LANE_STEP_BLOCK,
    ):
        if kernel not in ("thread", "warp", "walk", "lane"):
            raise ValueError(f"kernel must be thread, warp, walk or lane, not {kernel!r}")
        if kernel in ("thread", "lane") and walk:
            raise ValueError(f"walk=True goes with the warp kernel, not the {kernel} one")
        if walk_threads % 32 or not 32 <= walk_threads <= WALK_MAX_THREADS:
            raise ValueError(f"walk_threads must be a multiple of 32 in 32 .. {WALK_MAX_THREADS}, not {walk_threads}")
        if not 1 <= walk_depth <= 8:
            raise ValueError(f"walk_depth must be in 1 .. 8, not {walk_depth}")
        if not 1 <= lane_warps <= LANE_MAX_WARPS:
            raise ValueError(f"lane_warps must be in 1 .. {LANE_MAX_WARPS}, not {lane_warps}")
        if lane_step_block not in LANE_STEP_BLOCKS:
            raise ValueError(f"lane_step_block must be one of {LANE_STEP_BLOCKS}, not {lane_step_block}")
        super().__init__(
            device, needed_by="the DAG GPU engines", lane_warps=lane_warps, lane_step_block=lane_step_block
        )
        self.kernel = kernel
        self.name = f"cuda-{kernel}"
        self.walk = kernel == "walk" or walk  # kernel="walk" is kernel="warp", walk=True
        self.lane = kernel == "lane"  # the warp plan, its runs of small groups through dag_lane
        self.walk_tile, self.walk_threads, self.walk_depth = walk_tile, walk_threads, walk_depth
        # walk_vec1: the walk takes the batch-1 plan's lanes (one vector a lane, LE lanes over the
        # edges) whatever the batch, so a group's nodes and edges spread over a warp
        self.walk_vec1, self.walk_ring_bytes = walk_vec1, walk_ring_bytes
        self.lane_warps = lane_warps  # dag_lane: warps sharing a block's columns
        self.lane_step_block = lane_step_block  # dag_lane: its sums' steps a block
        self.memory_fraction = memory_fraction
        self.max_columns = max_columns
        self._said_no_walk: set[int] = set()  # batch widths whose missing walk plan was logged
        self.free_values = free_values

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        if net.n_edges >= 2**31 or net.n_nodes >= 2**31:
            raise ValueError("the GPU engines take fewer than 2^31 nodes and edges")
        to = self.cuda.to_device
        t0 = time.perf_counter()
        self.plan = plan = plan_values(net, self.free_values)  # value slots, reused after the last reader
        self.d_indptr = to(net.indptr.astype(np.int32))
        self.d_src = to(plan.src_slot if net.n_edges else np.zeros(1, np.int32))
        self.d_dst = to(plan.slot)
        self.d_w = to(np.ascontiguousarray(net.weights, dtype=np.float32) if net.n_edges else np.zeros(1, np.float32))
        self.d_bias = to(np.ascontiguousarray(net.bias, dtype=np.float32))
        self.d_act = to(np.ascontiguousarray(net.activation, dtype=np.int8))
        # the graph's arguments of every level kernel, in their order
        self._graph = (self.d_indptr, self.d_src, self.d_w, self.d_bias, self.d_act, self.d_dst)
        self.d_level_ptr = to(net.level_ptr.astype(np.int32))
        self.out_rows = plan.slot[net.output_rows].astype(np.int32)
        self.d_out_rows = to(self.out_rows if self.out_rows.size else np.zeros(1, np.int32))
        self._plans: dict[int, tuple[WarpPlan, WalkPlan | None]] = {}
        self.prepare_seconds = time.perf_counter() - t0

    def _columns_per_chunk(self, batch: int) -> int:
        net = self.net
        if self.max_columns:
            cols = int(self.max_columns)
        else:
            free, _ = self.cuda.mem_get_info()
            held = self._buffers.held_bytes()
            per_col = (self.plan.n_slots + max(1, net.n_outputs)) * 4
            cols = int(self.memory_fraction * (free + held) / per_col)
        cols = min(cols, 65535 if self.kernel == "thread" else 1 << 30)
        if cols >= batch:
            return batch
        cols = cols // 128 * 128
        if cols < 1:
            raise MemoryError(
                f"the network's {self.plan.n_slots} value rows do not fit on the GPU for 128 input vectors"
            )
        return cols

    def walk_plan(self, plan: WarpPlan) -> WalkPlan | None:
        """Which of the warp plan's one-block segments dag_walk (or dag_lane) runs, and its tables
        (None: none)."""
        if self.lane:
            threads = min(LANE_THREADS, plan.tile)  # divides the row width ld (powers of two)
            got = choose_lane_stream(
                self.net, plan, self.plan.slot, self.shared_limit, warps=self.lane_warps,
                step_block=self.lane_step_block,
            )  # fmt: skip
            if got is None:
                return None
            lt, st, lane_walked = got
            nbytes = st.shared_bytes()
            self._allow_shared(nbytes)
            arrays = lane_device_arrays(self.cuda, lt, st)
            shared = [nbytes] * len(lt.segs)
            return WalkPlan(lt.walk, 0, threads, threads, lane_walked, shared, arrays, 1, lt, st)
        if not self.walk:
            return None
        lanes = warp_plan(self.net.level_ptr, self.net.indptr, 1) if self.walk_vec1 else None
        chosen = choose_walk(
            self.net, plan, self.plan.slot, self.walk_tile, self.walk_depth, self.shared_limit, lanes,
            self.walk_ring_bytes,
        )  # fmt: skip
        if chosen is None:
            return None
        tables, log_lb, tile, walked = chosen
        shared = [tables.shared_bytes(c, tile) for c in tables.caps]
        self._allow_shared(max(shared))
        vec = 1 if self.walk_vec1 else plan.vec
        device = walk_device_arrays(self.cuda, tables)
        return WalkPlan(tables, log_lb, tile, self.walk_threads, walked, shared, device, vec=vec)

    def _ld(self, cols: int) -> tuple[int, WarpPlan | None, WalkPlan | None]:
        if self.kernel == "thread":
            return (cols + 3) // 4 * 4, None, None
        have = self._plans.get(cols)
        if have is None:
            plan = warp_plan(self.net.level_ptr, self.net.indptr, cols)
            have = self._plans[cols] = (plan, self.walk_plan(plan))
        plan = have[0]
        return -(-cols // plan.tile) * plan.tile, have[0], have[1]

    def _launch(self, values, ld: int, cols: int, plan: WarpPlan | None, walk: WalkPlan | None, stream) -> int:
        net = self.net
        launches = 0
        if plan is None:
            fn = self._fns["dag_thread"]
            for g in range(1, net.n_levels):
                lo, hi = int(net.level_ptr[g]), int(net.level_ptr[g + 1])
                if hi == lo:
                    continue
                fn.prepared_async_call(
                    (math.ceil((hi - lo) / BLOCK), cols),
                    (BLOCK, 1, 1),
                    stream,
                    values,
                    np.int32(ld),
                    np.int32(lo),
                    np.int32(hi),
                    *self._graph,
                )
                launches += 1
            return launches
        fn = self._fns["dag_warp4" if plan.vec == 4 else "dag_warp1"]
        tiles = ld // plan.tile
        for i, s in enumerate(plan.segments):
            if walk is not None and walk.lane and i in walk.walked:
                assert walk.lane_stream is not None
                grid = (ld // walk.threads, 1)
                r = walk.walked[i]
                launch_lane(
                    self._fns["dag_lane"], stream, grid, walk.threads, walk.shared[r], values, ld, walk.device, r,
                    walk.lane_stream,
                )  # fmt: skip
                launches += 1
                continue
            if walk is not None and i in walk.walked:
                r = walk.walked[i]
                launch_walk(
                    self._fns["dag_walk4" if walk.vec == 4 else "dag_walk1"],
                    stream,
                    (ld // walk.tile, 1),
                    walk.threads,
                    walk.shared[r],
                    values,
                    ld,
                    walk.device,
                    r,
                    walk.log_lb,
                    walk.tables,
                    walk.tables.caps[r],
                )
                launches += 1
                continue
            fn.prepared_async_call(
                (s.grid_x, tiles),
                (s.block, 1, 1),
                stream,
                values,
                np.int32(ld),
                self.d_level_ptr,
                np.int32(s.l0),
                np.int32(s.l1),
                np.int32(plan.log_lb),
                np.int32(s.log_le),
                *self._graph,
            )
            launches += 1
        return launches

    def infer(self, inputs) -> DagResult:
        net = self.net
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        batch = x.shape[0]
        n_out = self.out_rows.size
        if batch == 0:
            return DagResult(np.zeros((0, n_out), np.float32), 0.0, 0.0, self.name, self.device())
        chunk = self._columns_per_chunk(batch)
        plans: list = []

        def layout(cols: int) -> tuple[int, int, object]:
            ld, plan, walk = self._ld(cols)
            plans[:] = [ld, plan, walk]
            return ld, self.plan.n_slots, self.d_out_rows

        def launch(values, ld: int, cols: int, stream) -> int:
            return self._launch(values, ld, cols, plans[1], plans[2], stream)

        outputs, seconds, launches = run_chunks(self, x, chunk, n_out, layout, launch)
        ld, plan, walk = plans
        details = {
            "chunk_columns": chunk,
            "launches": launches,
            "kernel": self.kernel,
            "value_slots": self.plan.n_slots,
            "value_bytes": self.plan.n_slots * ld * 4,
        }
        if plan is not None:
            details.update(vec=plan.vec, lanes_batch=1 << plan.log_lb, segments=len(plan.segments))
        if walk is not None:
            t = walk.tables
            details.update(
                walk_kernel="dag_lane" if walk.lane else "dag_walk",
                walk_segments=len(walk.walked),
                walk_levels=int(sum(g1 - g0 for g0, g1 in t.segments)),
                walk_chunks=None
                if walk.lane_tables is None
                else int(walk.lane_tables.bounds.size - len(walk.lane_tables.segs)),
                walk_tile=walk.tile,
                walk_ring_rows=t.ring,
                walk_depth=None if walk.lane else t.depth,  # dag_lane copies a chunk ahead, not `depth` groups
                walk_threads=walk.threads,
                walk_near_edges=float(t.near.mean()) if t.near.size else 1.0,
                walk_shared_bytes=max(walk.shared),
            )
            if walk.lane_stream is not None:  # nodes summed together (dag_lane's bundles)
                st = walk.lane_stream
                details.update(lane_bundles=st.bundles, lane_warps=st.warps, lane_step_block=st.step_block)
        elif plan is not None and (self.lane or self.walk):
            # said, not silent: a wide network has no run of small groups, so all of it is cuda-warp's plan
            details.update(walk_kernel=None, walk_segments=0, walk_note=NO_WALK_NOTE)
            if chunk not in self._said_no_walk:
                self._said_no_walk.add(chunk)
                log.info("%s: %s (%d input vectors a chunk)", self.name, NO_WALK_NOTE, chunk)
        return DagResult(outputs, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)
