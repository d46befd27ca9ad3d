"""Near-ring tables for the population kernel (issue 19: populations at batch 1000).

The one-launch population kernel (`dag_population`, block (member, tile)) keeps one global row
per node, and at batch 1000 its edge reads are bound by HBM bandwidth (docs/dag.md, "How far back
the population reads"). A ring of the member's last K rows in shared memory would serve the reads
from at most K rows back: a source s of a reader in group h is *near* when it is a member row
(not a shared input) and no row written up to the end of group h takes its place, i.e.
s + K >= level_ptr[h + 1] (row s + K, the next to use slot s % K, is in a later group: with a
barrier between groups every near read happens before that write), and no other row of its own
group shares its slot (s - K is before the group's first row: rows of one group are written in
the same step, in no order). Every other source is read
from global memory, so a row is stored there only if some far read or the outputs need it.

This module builds those tables for a blocked population and runs them on the CPU with the
kernel's semantics (`run_ring_cpu`: per member, group by group, all reads of a group before its
writes, the ring as the kernel would hold it, slots two rows of one group wrote and unstored global
rows as NaN). The kernel is `dag_population_ring` (kernels/dag_levels.cu,
`PopulationCudaEngine(ring_rows=K)`), not yet run on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import activate_rows
from .population import BlockedPopulation


@dataclass
class RingTables:
    """codes[e]: edge e's source, a global row (>= 0) or -(slot + 1) for ring slot `slot` (near);
    stored[r]: row r is written to global memory (a far read or an output needs it); ring_rows: K."""

    codes: np.ndarray  # int32[edges]
    stored: np.ndarray  # bool[rows]
    ring_rows: int

    @property
    def near_share(self) -> float:
        return float((self.codes < 0).mean()) if self.codes.size else 0.0


def reader_groups(b: BlockedPopulation) -> np.ndarray:
    """The end row (level_ptr[h + 1]) of the group of every edge's reader."""
    rows = np.repeat(np.arange(b.n_rows), np.diff(b.indptr))
    return group_bounds(b, rows)[1]


def group_bounds(b: BlockedPopulation, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row, end row) of the group of each of `rows` (member rows; inputs: (0, n_inputs))."""
    # level_ptr holds each member's boundaries in order; the group of row r ends at the first
    # boundary above r and starts at the last one at or below it (members are contiguous, so the
    # global sorted search is the member's own)
    bounds = np.unique(np.concatenate(([0], b.level_ptr)))
    i = np.searchsorted(bounds, rows, side="right")
    return bounds[i - 1], bounds[np.minimum(i, bounds.size - 1)]


def ring_tables(b: BlockedPopulation, ring_rows: int) -> RingTables:
    """The near/far split of every edge for a ring of `ring_rows` rows (see the module docstring)."""
    if ring_rows < 0:
        raise ValueError(f"ring_rows must be >= 0, not {ring_rows}")
    src = b.sources.astype(np.int64)
    if ring_rows:
        # displaced after the reader's group only, and alone in its slot within its own group (rows
        # s - K, s - 2K, ... of the same group would write the slot in the same step: a race)
        start = group_bounds(b, src)[0]
        near = (src >= b.n_inputs) & (src + ring_rows >= reader_groups(b)) & (src - ring_rows < start)
    else:
        near = np.zeros(src.size, bool)
    codes = np.where(near, -(src % max(ring_rows, 1)) - 1, src).astype(np.int32)
    stored = np.zeros(b.n_rows, bool)
    stored[: b.n_inputs] = True  # the shared inputs are staged into global rows before the launch
    stored[src[~near]] = True
    stored[b.output_rows] = True
    return RingTables(codes, stored, int(ring_rows))


def run_ring_cpu(b: BlockedPopulation, t: RingTables, x: np.ndarray) -> np.ndarray:
    """The population through the ring tables with the kernel's semantics: (batch, all outputs).

    Per member, group by group: every node of the group reads its sources (ring slots for near
    codes, global rows for far ones) before any node of the group writes (the barrier), then each
    node's value goes to its ring slot and, if stored, to its global row. Global rows that are
    never stored hold NaN, so a far read of one shows in the outputs. The sums are float32 in
    numpy's order, not the kernels' bits: this checks the tables, the kernels' tests their bits.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch = x.shape[0]
    glob = np.full((b.n_rows, batch), np.nan, dtype=np.float32)
    glob[: b.n_inputs] = x.T
    k = max(t.ring_rows, 1)
    if t.codes.size and int((-t.codes - 1).max()) >= k:
        raise ValueError(f"a ring slot of the tables is beyond their {t.ring_rows} ring rows")
    members = b.member_levels.size - 1
    for m in range(members):
        ring = np.full((k, batch), np.nan, dtype=np.float32)
        bounds = b.level_ptr[b.member_levels[m] : b.member_levels[m + 1]]  # the member's group ends
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            e0, e1 = int(b.indptr[lo]), int(b.indptr[hi])
            codes, wts = t.codes[e0:e1], b.weights[e0:e1]
            vals = np.where(codes[:, None] < 0, ring[np.maximum(-codes - 1, 0)], glob[np.maximum(codes, 0)])
            sums = np.zeros((hi - lo, batch), dtype=np.float32)
            rows = np.repeat(np.arange(hi - lo), np.diff(b.indptr[lo : hi + 1]))
            np.add.at(sums, rows, wts[:, None] * vals)  # float32, not the kernels' fmaf order
            sums += b.bias[lo:hi, None]
            out = activate_rows(sums, b.activation[lo:hi])
            slots = np.arange(lo, hi) % k
            ring[slots] = out
            clash = np.bincount(slots, minlength=k) > 1
            ring[clash] = np.nan  # rows of one group that share a slot race in the kernel: unknown
            keep = t.stored[lo:hi]
            glob[np.arange(lo, hi)[keep]] = out[keep]
    return np.ascontiguousarray(glob[b.output_rows].T)
