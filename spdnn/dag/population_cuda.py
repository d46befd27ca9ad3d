"""A population of small networks in one kernel launch (pycuda; kernels/dag_levels.cu).

Rows are member-major (population.blocked). One launch for the whole population whatever its
members' depths, through one of the kernels below (dag_population, dag_walk and
dag_population_ring sum alike, lane_sum: bit for bit the same):

* dag_population (the default): block (m, t) walks member m's groups on a tile of LB x VEC
  vectors (up to 128) with one global row per node and a block barrier between groups.
* dag_walk (`walk=True`): the grid is (tiles of `walk_tile` vectors, members); block (t, m)
  walks member m with its values in a shared-memory ring (a member of 2,000 nodes at 8 vectors:
  64 KB), its groups' structure staged ahead, the shared inputs and any value the ring no longer
  holds copied from global memory, which holds only those rows, the inputs and the outputs
  (walk_tables). Measured on an H200 (1,000 members of 1e4 edges): 1.3x faster than
  dag_population at batch 1, 5x slower at batch 100 and 1000 (docs/dag.md says why).
  `walk_vec1=True` walks with the batch-1 lanes (one vector a lane, LE lanes over the edges) at any
  batch: written to shorten each group's chain; measured at 1,000 members, batch 1000, it is slower
  (322 ms against the default's 16.6: docs/dag.md).
* dag_lane (`lane=True`, `lane_warps`): the grid is (blocks of 32 vectors, members); a thread per
  vector walks member m as cuda-lane walks a run (population_lane: each member's groups chunked,
  its values in a ring of LANE_RING_BYTES, older rows read back from global memory). Only members
  whose groups fit its chunks and whose far sources lie two chunks back can be walked; otherwise it
  says so. Emulated (tests/test_dag_population.py); its GPU test had not run on a GPU when this was
  written.
* dag_population_ring (`ring_rows=K`, `ring_tile`): dag_population with the member's last K rows of the tile in
  shared memory (K x tile x 4 bytes a block): sources the ring still holds are read there, the
  rest from global rows, which are written only where a far read or an output needs them
  (population_ring.ring_tables, tested on the CPU with the kernel's semantics). Aimed at batch
  1000, thought bound by HBM there; measured on an H200 (2026-12-06, docs/dag.md) it gives the
  default's bits and no speed: 22% fewer HBM bytes, the same 16.9 ms.
* `min_blocks=k` builds dag_population (and the ring kernel) with launch bounds for k resident
  blocks of `block` threads an SM, so the compiler keeps to the registers that allow them (same
  bits): a member's walk waits on each group's loads, and more resident members hide the wait.
Lanes are laid out as in cuda-warp (cuda.warp_plan): LB lanes along the batch (VEC = 4 from
batch 64), LE lanes over a node's edges, LE from the population's mean in-degree. Batches wider
than GPU memory allows run in chunks of columns, one launch per chunk (and per 65,535 members
for dag_walk).
"""

from __future__ import annotations

import time

import numpy as np

from .cuda import (
    LANE_MAX_WARPS,
    WALK_MAX_THREADS,
    CudaDagBase,
    LaneTables,
    WalkTables,
    _pow2_ceil,
    lane_chunks,
    lane_device_arrays,
    lane_tables_from,
    launch_lane,
    launch_walk,
    ring_sizes,
    row_groups,
    run_chunks,
    walk_device_arrays,
    walk_layout,
    walk_tables,
)
from .engine import DagResult, dense_inputs
from .lane_stream import LANE_THREADS, LANE_WARPS, LaneStream, lane_stream
from .population import BlockedPopulation, Population, blocked
from .population_ring import RingTables, ring_tables

MAX_GRID_Y = 65535
MAX_THREADS_PER_SM = 2048  # sm_80 .. sm_90


def population_plan(batch: int, mean_in_degree: float, max_tile: int = 128) -> tuple[int, int, int, int]:
    """(vec, log_lb, log_le, tile) for a batch width, as cuda.warp_plan chooses them for one group;
    `max_tile` (a power of two) caps the tile of input vectors a block takes (dag_population_ring's
    `ring_tile`: a narrower tile, a smaller ring, more blocks an SM)."""
    vec = 4 if batch >= 64 else 1
    lb = min(32, max(1, max_tile // vec), _pow2_ceil(batch / vec))
    le = min(32 // lb, _pow2_ceil(mean_in_degree / 2))
    return vec, lb.bit_length() - 1, le.bit_length() - 1, lb * vec


def member_runs(b: BlockedPopulation) -> tuple[np.ndarray, np.ndarray]:
    """(one run of groups per member, the rows kept in global memory: inputs and outputs), as
    walk_tables takes them for dag_walk and dag_lane."""
    runs = np.stack([b.member_levels[:-1], b.member_levels[1:] - 1], axis=1)
    keep = np.zeros(b.n_rows, bool)
    keep[: b.n_inputs] = True  # the inputs are staged into global rows 0 .. n_inputs - 1
    keep[b.output_rows] = True
    return runs, keep


def population_walk(b: BlockedPopulation, log_le: int, tile: int, depth: int, shared_limit: int) -> WalkTables | None:
    """dag_walk's tables for every member of the blocked population (one run per member), with a ring
    that holds the largest member (or the largest ring, by halves, under which every member can be
    walked and one launch fits `shared_limit`); None if none does."""
    members = b.member_levels.size - 1
    runs, keep = member_runs(b)
    log_les = np.full(b.level_ptr.size - 1, log_le, np.int64)
    largest = int((b.level_ptr[runs[:, 1]] - b.level_ptr[runs[:, 0]]).max()) if members else 1
    for ring in ring_sizes(largest, tile):
        tables = walk_tables(
            b.indptr, b.sources, b.weights, b.level_ptr, runs, b.bias, b.activation, log_les, keep, ring, depth
        )
        if len(tables.segments) == members and tables.shared_bytes(tables.caps.max(axis=0), tile) <= shared_limit:
            return tables
    return None


# dag_lane's chunks and ring for members: 1,000 NEAT members of 1e4 edges (groups of up to 211 nodes
# and 279 far rows) are all served by a 512-row ring with these caps, in 209 KB of shared memory
LANE_POPULATION_CAPS = (64, 256, 1024, 320)
LANE_RING_BYTES = 1 << 16  # at most 512 rows of 32 vectors


def population_lane(
    b: BlockedPopulation,
    warps: int,
    shared_limit: int,
    ring_bytes: int = LANE_RING_BYTES,
    caps: tuple[int, int, int, int] = LANE_POPULATION_CAPS,
) -> tuple[LaneTables, LaneStream] | None:
    """dag_lane's tables and stream for every member (one run each), the ring the largest member's
    rows or what ring_bytes holds, halved until every member can be walked within shared_limit;
    None if none can."""
    members = b.member_levels.size - 1
    runs, keep = member_runs(b)
    lp = b.level_ptr
    group_of = row_groups(lp, b.n_rows)
    ones = np.zeros(lp.size - 1, np.int64)  # LE = 1: each thread sums a node's edges in order
    largest = int((lp[runs[:, 1]] - lp[runs[:, 0]]).max()) if members else 1
    for ring in ring_sizes(largest, LANE_THREADS, ring_bytes):
        t = walk_tables(b.indptr, b.sources, b.weights, lp, runs, b.bias, b.activation, ones, keep, ring, 1)
        if len(t.segments) != members:
            continue
        served, rows = lane_chunks(t, caps, group_of)
        if len(rows) != members:
            continue
        lt = lane_tables_from(t, served, caps)
        st = lane_stream(lt, warps)
        if st.shared_bytes() <= shared_limit:
            return lt, st
    return None


class PopulationCudaEngine(CudaDagBase):
    """One launch for a whole population; see the module docstring."""

    name = "cuda-population"

    def __init__(
        self,
        device: int = 0,
        block: int = 512,
        memory_fraction: float = 0.8,
        walk: bool = False,
        walk_tile: int = 8,
        walk_threads: int = 128,
        walk_depth: int = 1,
        walk_vec1: bool = False,
        lane: bool = False,
        lane_warps: int = LANE_WARPS,
        ring_rows: int = 0,
        ring_tile: int = 128,
        min_blocks: int = 0,
    ):
        if walk and lane:
            raise ValueError("walk=True and lane=True are two kernels: choose one")
        if ring_rows < 0 or (ring_rows and (walk or lane)):
            raise ValueError(f"ring_rows (dag_population_ring) is >= 0 and without walk or lane, not {ring_rows!r}")
        if ring_tile not in (4, 8, 16, 32, 64, 128) or (ring_tile != 128 and not ring_rows):
            raise ValueError(f"ring_tile is a power of two in 4 .. 128, with ring_rows only, not {ring_tile!r}")
        if not 1 <= lane_warps <= LANE_MAX_WARPS:
            raise ValueError(f"lane_warps must be in 1 .. {LANE_MAX_WARPS}, not {lane_warps}")
        if block % 32 or not 32 <= block <= 1024:
            raise ValueError(f"block must be a multiple of 32 in 32 .. 1024, not {block}")
        if walk_threads % 32 or not 32 <= walk_threads <= WALK_MAX_THREADS:
            raise ValueError(f"walk_threads must be a multiple of 32 in 32 .. {WALK_MAX_THREADS}, not {walk_threads}")
        if min_blocks and (walk or lane):
            raise ValueError("min_blocks sets dag_population's launch bounds: not with walk or lane")
        if min_blocks < 0 or block * min_blocks > MAX_THREADS_PER_SM:
            raise ValueError(
                f"min_blocks is >= 0 (0: the compiler's choice) and min_blocks x block at most "
                f"{MAX_THREADS_PER_SM} threads an SM, not {min_blocks!r} blocks of {block}"
            )
        # min_blocks: dag_population's launch bounds, so the compiler keeps registers for that many
        # resident blocks of `block` threads (the .cu's POPULATION_BOUNDS; same bits)
        defines = {"POPULATION_THREADS": block, "POPULATION_MIN_BLOCKS": min_blocks} if min_blocks else None
        super().__init__(device, needed_by="the DAG population engine", lane_warps=lane_warps, defines=defines)
        self.min_blocks = int(min_blocks)
        self.block = block
        self.memory_fraction = memory_fraction
        self.walk, self.walk_tile, self.walk_threads, self.walk_depth = walk, walk_tile, walk_threads, walk_depth
        self.walk_vec1 = walk_vec1  # dag_walk takes the batch-1 lanes (one vector a lane) at any batch
        self.lane, self.lane_warps = lane, lane_warps  # dag_lane: a thread per vector walks a member
        self.ring_rows = int(ring_rows)  # dag_population_ring: the member's last rows in shared memory
        self.ring_tile = int(ring_tile)  # its tile's input vectors at most (fewer: other LE, other bits)

    def prepare(self, pop: Population) -> None:  # type: ignore[override]
        self.pop = pop
        b = self.layout = blocked(pop)
        if b.sources.size >= 2**31 or b.n_rows >= 2**31:
            raise ValueError("the GPU engines take fewer than 2^31 nodes and edges")
        to = self.cuda.to_device
        self.d_indptr = to(b.indptr.astype(np.int32))
        self.d_src = to(b.sources if b.sources.size else np.zeros(1, np.int32))
        self.d_w = to(b.weights if b.weights.size else np.zeros(1, np.float32))
        self.d_bias = to(b.bias.astype(np.float32))
        self.d_act = to(b.activation.astype(np.int8))
        self.d_level_ptr = to(b.level_ptr.astype(np.int32))
        self.d_member_levels = to(b.member_levels.astype(np.int32))
        self.d_dst = to(np.arange(b.n_rows, dtype=np.int32))  # one row per node: members are small
        # the graph's arguments of every level kernel, in their order
        self._graph = (self.d_indptr, self.d_src, self.d_w, self.d_bias, self.d_act, self.d_dst)
        self.out_rows = b.output_rows.astype(np.int32)
        self.d_out_rows = to(self.out_rows if self.out_rows.size else np.zeros(1, np.int32))
        computed = b.n_rows - b.n_inputs
        self.mean_in_degree = b.sources.size / max(1, computed)
        self._walks: dict[tuple[int, int], tuple[WalkTables, dict, object]] = {}
        self._lane: tuple[LaneTables, LaneStream, dict, object] | None = None
        self.ring: RingTables | None = None
        if self.ring_rows:
            self.ring = ring_tables(b, self.ring_rows)
            d_codes = to(self.ring.codes if self.ring.codes.size else np.zeros(1, np.int32))
            d_stored = to(np.where(self.ring.stored, np.arange(b.n_rows), -1).astype(np.int32))
            self._ring_graph = (self.d_indptr, d_codes, self.d_w, self.d_bias, self.d_act, d_stored)

    def _lane_for(self) -> tuple[LaneTables, LaneStream, dict, object] | None:
        """dag_lane's tables, stream, device arrays and output rows (built once); None: not asked for."""
        if not self.lane:
            return None
        if self._lane is None:
            got = population_lane(self.layout, self.lane_warps, self.shared_limit)
            if got is None:
                raise ValueError(
                    "dag_lane cannot walk every member (lane=True): no ring that fits shared memory serves them"
                    " all (a group over the chunk caps, or a far source too close for its copy)"
                )
            lt, st = got
            self._allow_shared(st.shared_bytes())
            out = self.cuda.to_device(lt.walk.slot[self.layout.output_rows].astype(np.int32))
            self._lane = (lt, st, lane_device_arrays(self.cuda, lt, st), out)
        return self._lane

    def _walk_for(self, vec: int, log_lb: int, log_le: int) -> tuple[WalkTables, dict, object, int, int, int] | None:
        """dag_walk's tables (and device arrays, output rows, log_lb, tile, VEC) for this lanes plan;
        None: dag_population."""
        if not self.walk:
            return None
        if self.walk_vec1:
            vec, log_lb, log_le, _ = population_plan(1, self.mean_in_degree)
        walk_lb, tile = walk_layout(vec, log_lb, self.walk_tile)
        key = (log_le, tile)
        if key not in self._walks:
            tables = population_walk(self.layout, log_le, tile, self.walk_depth, self.shared_limit)
            if tables is None:
                raise ValueError("the population's members do not fit dag_walk's shared memory (walk=True)")
            self._allow_shared(tables.shared_bytes(tables.caps.max(axis=0), tile))
            out = self.cuda.to_device(tables.slot[self.layout.output_rows].astype(np.int32))
            self._walks[key] = (tables, walk_device_arrays(self.cuda, tables), out)
        return (*self._walks[key], walk_lb, tile, vec)

    def _chunk(self, batch: int, rows: int) -> int:
        free, _ = self.cuda.mem_get_info()
        per_col = (rows + max(1, self.out_rows.size)) * 4
        cols = int(self.memory_fraction * (free + self._buffers.held_bytes()) / per_col)
        if cols >= batch:
            return batch
        if cols < 128:
            raise MemoryError(f"the population's {rows} value rows do not fit on the GPU for 128 vectors")
        return cols // 128 * 128

    def infer(self, inputs) -> DagResult:
        b = self.layout
        x = dense_inputs(inputs, b.n_inputs)
        wall = time.perf_counter()
        batch, n_out = x.shape[0], self.out_rows.size
        if batch == 0:
            return DagResult(np.empty((0, n_out), np.float32), 0.0, 0.0, self.name, self.device())
        members = len(self.pop.members)
        vec, log_lb, log_le, tile = population_plan(batch, self.mean_in_degree, self.ring_tile)
        walk = self._walk_for(vec, log_lb, log_le)
        lane = self._lane_for()
        rows = lane[0].walk.n_slots if lane is not None else b.n_rows if walk is None else walk[0].n_slots
        chunk = self._chunk(batch, rows)
        used: dict = {}

        def layout(cols: int) -> tuple[int, int, object]:
            used["plan"] = population_plan(cols, self.mean_in_degree, self.ring_tile)
            used["walk"] = walk = self._walk_for(*used["plan"][:3])
            ld = -(-cols // used["plan"][3]) * used["plan"][3]
            if lane is not None:
                return ld, lane[0].walk.n_slots, lane[3]
            return (ld, b.n_rows, self.d_out_rows) if walk is None else (ld, walk[0].n_slots, walk[2])

        def launch(values, ld: int, cols: int, stream) -> int:
            vec, log_lb, log_le, tile = used["plan"]
            if lane is not None:
                _, st, dev, _ = lane
                threads = min(LANE_THREADS, tile)  # divides ld (powers of two)
                for m0 in range(0, members, MAX_GRID_Y):
                    grid = (ld // threads, min(MAX_GRID_Y, members - m0))
                    launch_lane(
                        self._fns["dag_lane"], stream, grid, threads, st.shared_bytes(), values, ld, dev, m0, st
                    )
                return -(-members // MAX_GRID_Y)
            if used["walk"] is None:  # dag_population, or dag_population_ring: a block (member, tile)
                levels = (self.d_level_ptr, self.d_member_levels)
                head = (values, np.int32(ld), *levels, np.int32(log_lb), np.int32(log_le))
                grid, block = (members, ld // tile), (self.block, 1, 1)
                if self.ring is None:
                    fn = self._fns["dag_population4" if vec == 4 else "dag_population1"]
                    fn.prepared_async_call(grid, block, stream, *head, *self._graph)
                    return 1
                shared = self.ring_rows * tile * 4
                if shared > self.shared_limit:
                    raise ValueError(
                        f"a ring of {self.ring_rows} rows of {tile} vectors needs {shared} bytes of shared memory, "
                        f"more than the {self.shared_limit} a block may have: choose fewer ring_rows"
                    )
                self._allow_shared(shared)
                fn = self._fns["dag_population_ring4" if vec == 4 else "dag_population_ring1"]
                fn.prepared_async_call(
                    grid, block, stream, *head, *self._ring_graph, np.int32(self.ring_rows), shared_size=shared
                )
                return 1
            tables, dev, _, walk_lb, walk_tile, walk_vec = used["walk"]
            caps = tables.caps.max(axis=0)
            shared = tables.shared_bytes(caps, walk_tile)
            fn = self._fns["dag_walk4" if walk_vec == 4 else "dag_walk1"]
            for m0 in range(0, members, MAX_GRID_Y):
                grid = (ld // walk_tile, min(MAX_GRID_Y, members - m0))
                launch_walk(fn, stream, grid, self.walk_threads, shared, values, ld, dev, m0, walk_lb, tables, caps)
            return -(-members // MAX_GRID_Y)

        outputs, seconds, launches = run_chunks(self, x, chunk, n_out, layout, launch)
        vec, log_lb, log_le, _ = used["plan"]
        details = {
            "members": members,
            "launches": launches,
            "chunk_columns": chunk,
            "kernel": "lane"
            if lane is not None
            else "walk"
            if used["walk"] is not None
            else "population-ring"
            if self.ring is not None
            else "population",
            "vec": vec,
            "lanes_batch": 1 << log_lb,
            "lanes_edges": 1 << log_le,
            "value_rows": rows,
        }
        if lane is not None:
            lt, st = lane[0], lane[1]
            details.update(
                lane_warps=st.warps,
                lane_ring_rows=lt.walk.ring,
                lane_bundles=st.bundles,
                lane_shared_bytes=st.shared_bytes(),
            )
        elif used["walk"] is None:
            kernel = ("dag_population_ring" if self.ring is not None else "dag_population") + ("4" if vec == 4 else "1")
            details.update(
                block=self.block,
                min_blocks=self.min_blocks,
                registers=int(self._fns[kernel].get_attribute(self.cuda.function_attribute.NUM_REGS)),
            )
            if self.ring is not None:
                details.update(
                    ring_rows=self.ring_rows,
                    ring_near_share=self.ring.near_share,
                    ring_rows_stored=int(self.ring.stored.sum()),
                    ring_shared_bytes=self.ring_rows * used["plan"][3] * 4,
                    ring_tile=used["plan"][3],
                )
        else:
            tables, _, _, _, walk_tile, walk_vec = used["walk"]
            details.update(
                walk_vec=walk_vec,
                walk_tile=walk_tile,
                walk_threads=self.walk_threads,
                walk_ring_rows=tables.ring,
                walk_depth=tables.depth,
                walk_shared_bytes=tables.shared_bytes(tables.caps.max(axis=0), walk_tile),
            )
        return DagResult(outputs, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)
