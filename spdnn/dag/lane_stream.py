"""dag_lane's instruction stream: LaneTables turned into what its threads read to walk the groups.

dag_lane runs a deep, narrow network one input vector per thread, 32 vectors a block shared by
LANE_WARPS warps, so every structure word is read by a whole warp at once. Measured on an H200
(ncu, docs/dag.md), its first version spent 36 instructions an edge working out where a value was
(ring or far buffer, node ends inside an unrolled loop). Here that is done once, on the host:

* every source is a shared-memory word offset, `row % ring * 32` in the ring or the place of its
  far entry in the chunk's far buffer (two buffers, by chunk parity), so the thread reads
  `smem[addr + t]` and nothing decides anything per edge;
* a group's nodes (which do not read one another) are split into bundles of 1 to 4 consecutive
  nodes, as many as there are warps for groups of up to 4 x LANE_WARPS nodes (bundle_layout);
  warp w sums bundles w, w + LANE_WARPS, ... of each group, each step of a bundle holding its P
  (address, weight) pairs, so P independent fmaf chains overlap. A node with fewer edges than its
  bundle's longest is padded with weight 0 read from a zero row: it adds +0 after its last edge,
  so its sum is the edge-order fmaf sum (LE = 1) it was.

Chunk layout (int32 words, every section on 4 words; offsets relative to the chunk):
  [0:4]      n_groups, n_far, far section offset, 0
  per group  its bundles, its first bundle (index among the chunk's), 0, 0
  per bundle P, steps, record offset, node offset
  records    per bundle, step-major: P addresses then P weight bits (a step of 3 laid out as 4)
  nodes      per bundle node: ring address, global slot or -1, bias bits, activation
  far        the global value slot of each far entry (copied by each thread for its column)
`chunk_words[i] = (first word, words)` of chunk i (positions of LaneTables.bounds; the last
position of a run is no chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class LaneTables(Protocol):
    """What lane_stream reads of spdnn.dag.cuda.LaneTables (typed here: cuda.py imports this module)."""

    walk: Any  # cuda.WalkTables
    bounds: np.ndarray
    segs: np.ndarray
    caps: tuple[int, int, int, int]


LANE_THREADS = 32  # dag_lane's columns a block (fewer for batches narrower than a warp)
LANE_WARPS = 4  # dag_lane's warps a block by default: they share the columns and split each group's bundles
HEADER_WORDS = 4


def _up4(n):
    return (n + 3) // 4 * 4


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0 .. counts[i] - 1 for each i, back to back."""
    counts = np.asarray(counts, np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


@dataclass
class LaneStream:
    """The stream of every chunk of a LaneTables, and the shared-memory layout it addresses."""

    words: np.ndarray  # int32: every chunk's words, back to back
    chunk_words: np.ndarray  # int32[len(bounds), 2]: (first word, words) per chunk position
    ring_words: int  # the ring's words (ring rows x 32, rounded to 4)
    far_cap: int  # far entries a chunk's buffer holds
    cap_words: int  # the most words of one chunk (a staging buffer's size)
    bundles: int  # bundles in all (for the record: nodes / bundles is the overlap)
    warps: int  # the warps a block the bundles were split for
    step_block: int = 1  # every bundle's steps a multiple of this (the kernel's -DLANE_STEP_BLOCK)

    @property
    def zero_word(self) -> int:
        """The zero row: after the ring and the two far buffers."""
        return self.ring_words + 2 * self.far_cap * LANE_THREADS

    def shared_bytes(self) -> int:
        """ring, two far buffers, the zero row, three staging buffers."""
        return 4 * (self.zero_word + LANE_THREADS + 3 * self.cap_words)


def bundle_layout(n_nodes: np.ndarray, warps: int = LANE_WARPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bundles of each group's nodes for `warps` warps: as many bundles as warps (one node each for
    smaller groups), of at most 4 nodes (more bundles for groups of more than 4 x warps nodes),
    sizes as even as can be, consecutive nodes. Per node (bundle index over all groups, its place
    in the bundle), and per bundle its width P (1 .. 4)."""
    n_nodes = np.asarray(n_nodes, np.int64)
    per_group = np.where(n_nodes <= 4 * warps, np.minimum(n_nodes, warps), -(-n_nodes // 4))
    first = np.cumsum(per_group) - per_group
    group = np.repeat(np.arange(n_nodes.size), n_nodes)
    j = _ranks(n_nodes)  # node in its group
    nb = np.maximum(per_group[group], 1)
    base, extra = n_nodes[group] // nb, n_nodes[group] % nb  # `extra` bundles of base + 1, then base
    big = extra * (base + 1)
    local = np.where(j < big, j // (base + 1), extra + (j - big) // np.maximum(base, 1))
    place = j - (local * base + np.minimum(local, extra))
    bundle = first[group] + local
    width = np.zeros(int(per_group.sum()), np.int64)
    np.add.at(width, bundle, 1)
    return bundle, place, width


def lane_stream(lt: LaneTables, warps: int = LANE_WARPS, step_block: int = 1) -> LaneStream:
    """The stream for every chunk of lt, its groups' bundles split for `warps` warps (see the module
    docstring). step_block > 1: every bundle's steps padded to a multiple of it (weight 0 from the
    zero row, as for a bundle's shorter nodes), for the build whose sums go step_block steps at a
    time with no remainder loop and the next block's records loaded ahead; each staging buffer then
    has room for that one block read past a chunk's last words."""
    if step_block < 1:
        raise ValueError(f"step_block must be at least 1, not {step_block}")
    t = lt.walk
    k, far_cap = int(t.ring), int(lt.caps[3])
    ring_words = _up4(k * LANE_THREADS)
    zero_word = ring_words + 2 * far_cap * LANE_THREADS
    info = t.info.astype(np.int64)
    bounds = lt.bounds.astype(np.int64)
    is_chunk = np.ones(bounds.size, bool)
    is_chunk[lt.segs[:, 1]] = False  # a run's last position only bounds its last chunk
    positions = np.flatnonzero(is_chunk)
    chunk_of_group = np.full(info.shape[0], -1, np.int64)
    for i in positions:
        chunk_of_group[bounds[i] : bounds[i + 1]] = i
    groups = np.flatnonzero(chunk_of_group >= 0)  # walked groups, in order
    n_nodes = info[groups + 1, 0] - info[groups, 0]
    rows = np.repeat(info[groups, 0], n_nodes) + _ranks(n_nodes)
    node_group = np.repeat(groups, n_nodes)
    bundle, place, width = bundle_layout(n_nodes, warps)
    counts = t.nodes[rows, 3].astype(np.int64) >> 8
    steps = np.zeros(width.size, np.int64)
    np.maximum.at(steps, bundle, counts)
    steps = -(-steps // step_block) * step_block
    b_chunk = np.zeros(width.size, np.int64)
    b_chunk[bundle] = chunk_of_group[node_group]
    b_group = np.zeros(width.size, np.int64)
    b_group[bundle] = node_group
    lanes = np.where(width == 3, 4, width)  # a step of a bundle of 3 is laid out as one of 4
    rec_words = _up4(steps * 2 * lanes)
    span = rec_words + 4 * width  # records, then a node record (4 words) per node

    # per chunk: header, group headers, bundle headers, each bundle's records and nodes, far slots
    nb = np.zeros(bounds.size, np.int64)
    np.add.at(nb, b_chunk, 1)
    ng = np.zeros(bounds.size, np.int64)
    np.add.at(ng, g_chunk := chunk_of_group[groups], 1)
    body = np.zeros(bounds.size, np.int64)
    np.add.at(body, b_chunk, span)
    far_lo = np.zeros(bounds.size, np.int64)
    far_n = np.zeros(bounds.size, np.int64)
    far_lo[positions] = info[bounds[positions], 2]
    far_n[positions] = info[bounds[positions + 1], 2] - far_lo[positions]
    far_off = HEADER_WORDS + 4 * ng + 4 * nb + body
    size = np.where(is_chunk, far_off + _up4(far_n), 0)
    start = np.cumsum(size) - size
    words = np.zeros(int(size.sum()), np.int32)
    chunk_words = np.stack([start, size], axis=1).astype(np.int32)

    # each bundle's place: after its chunk's bundle headers and the chunk's earlier bundles
    b_first = np.cumsum(nb) - nb  # first bundle of each chunk
    before = np.cumsum(span) - span
    b_index = np.arange(width.size) - b_first[b_chunk]
    b_off = HEADER_WORDS + 4 * ng[b_chunk] + 4 * nb[b_chunk] + before - before[b_first[b_chunk]]
    b_abs = start[b_chunk] + b_off

    c = start[positions]
    words[c], words[c + 1], words[c + 2] = ng[positions], far_n[positions], far_off[positions]
    # group headers: the group's bundles, the first one's index among its chunk's bundles
    g_first = np.cumsum(ng) - ng
    g_index = np.arange(groups.size) - g_first[g_chunk]
    per_group = np.bincount(b_group, minlength=info.shape[0])[groups]
    first_bundle = np.cumsum(per_group) - per_group  # over all bundles
    gh = start[g_chunk] + HEADER_WORDS + 4 * g_index
    words[gh], words[gh + 1] = per_group, first_bundle - b_first[g_chunk]
    hdr = start[b_chunk] + HEADER_WORDS + 4 * ng[b_chunk] + 4 * b_index
    words[hdr], words[hdr + 1], words[hdr + 2], words[hdr + 3] = width, steps, b_off, b_off + rec_words

    # records: every address slot first reads the zero row (weight 0); then each edge at (step, place)
    rel = _ranks(rec_words)
    q_of = np.repeat(lanes, rec_words)
    slot_word = np.repeat(b_abs, rec_words) + rel
    words[slot_word[rel % (2 * q_of) < q_of]] = zero_word
    e_node = np.repeat(np.arange(rows.size), counts)
    e_step = _ranks(counts)
    g = node_group[e_node]
    e_index = info[g, 1] + t.nodes[rows[e_node], 0] + e_step  # the edge in t.edges
    code = t.edges[e_index, 0].astype(np.int64)
    ch = chunk_of_group[g]
    far_entry = info[g, 2] - info[bounds[ch], 2] - code - 1  # within the chunk's far list (code < 0)
    addr = np.where(code >= 0, code * LANE_THREADS, ring_words + ((ch % 2) * far_cap + far_entry) * LANE_THREADS)
    q = lanes[bundle[e_node]]
    rec = b_abs[bundle[e_node]] + e_step * 2 * q + place[e_node]
    words[rec] = addr
    words[rec + q] = t.edges[e_index, 1]

    # nodes: ring address, global slot (-1: no reader needs it there), bias bits, activation
    nd = b_abs[bundle] + rec_words[bundle] + 4 * place
    words[nd] = (rows % k) * LANE_THREADS
    words[nd + 1] = t.nodes[rows, 2]
    words[nd + 2] = t.nodes[rows, 1]
    words[nd + 3] = t.nodes[rows, 3] & 0xFF

    # far slots
    f_chunk = np.repeat(np.arange(bounds.size), far_n)
    f_rank = _ranks(far_n)
    words[start[f_chunk] + far_off[f_chunk] + f_rank] = t.far[far_lo[f_chunk] + f_rank]
    cap = int(_up4(size.max())) if size.size else 4
    if step_block > 1:
        cap += 2 * 4 * step_block  # one block of records of 4 nodes read ahead past the last bundle
    return LaneStream(words, chunk_words, ring_words, far_cap, cap, int(width.size), warps, step_block)
