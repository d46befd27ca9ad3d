"""Levelisation: dependency groups by longest path from the inputs, vectorised frontier by frontier.

level(v) = 0 for an input; for any other node, 1 + the largest level of its sources, or 1
if it has none (a bias-only node). Every node of group g depends only on groups < g, so a
group can be computed all at once. Kahn's algorithm runs frontier by frontier in numpy: a
frontier's out-edges are gathered with one index array, levels pushed with
np.maximum.at and remaining in-degrees lowered with np.subtract.at; the Python loop runs
once per group, never once per node. Nodes that never reach in-degree 0 lie on or behind a
cycle: `find_cycle` names one cycle's nodes (and its edges' file lines).
"""

from __future__ import annotations

import numpy as np

from ..io.errors import DataError
from .checks import MAX_LISTED, index_edges
from .network import INPUT, DagNetwork, DagSpec


class SpecParts:
    """A DagSpec put together from pieces (populations' unions, unrolled recurrent networks):
    nodes and edges appended piece by piece, concatenated once by `spec`."""

    def __init__(self) -> None:
        self.nodes: list[tuple[np.ndarray, ...]] = []
        self.edges: list[tuple[np.ndarray, ...]] = []

    def add_nodes(self, ids: np.ndarray, bias: np.ndarray, activation: np.ndarray, role: np.ndarray) -> None:
        self.nodes.append((ids, bias, activation, role))

    def add_edges(self, source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> None:
        self.edges.append((source, target, weight))

    def spec(self, nodes_name: str, edges_name: str) -> DagSpec:
        ids, bias, act, role = (np.concatenate(col) for col in zip(*self.nodes))
        if self.edges:
            src, tgt, w = (np.concatenate(col) for col in zip(*self.edges))
        else:
            src, tgt, w = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return DagSpec(ids, bias, act, role, src, tgt, w, nodes_name=nodes_name, edges_name=edges_name)


def csr_by(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, ptr): stable sort of entries by key, and ptr[k] .. ptr[k + 1] the entries with key k."""
    order = np.argsort(keys, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return order, ptr


def gather_ranges(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated index ranges ptr[r] .. ptr[r + 1] for all rows, as one array (no Python loop)."""
    starts = ptr[rows]
    counts = ptr[rows + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return offsets + np.arange(total, dtype=np.int64)


def longest_path_levels(
    n: int, src: np.ndarray, tgt: np.ndarray, is_input: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Levels by Kahn's algorithm, frontier by frontier. Returns (level int64[n], placed bool[n]).

    Nodes not placed are on or behind a cycle; their level is meaningless.
    """
    order, out_ptr = csr_by(src, n)
    out_tgt = tgt[order]
    indeg = np.bincount(tgt, minlength=n).astype(np.int64)
    level = np.where(is_input, 0, 1).astype(np.int64)
    frontier = np.flatnonzero(indeg == 0)
    placed = np.zeros(n, dtype=bool)
    while frontier.size:
        placed[frontier] = True
        edges = gather_ranges(out_ptr, frontier)
        if edges.size == 0:
            break
        targets = out_tgt[edges]
        sources_level = np.repeat(level[frontier], np.diff(out_ptr)[frontier])
        np.maximum.at(level, targets, sources_level + 1)
        np.subtract.at(indeg, targets, 1)
        touched = np.unique(targets)
        frontier = touched[indeg[touched] == 0]
    return level, placed


def find_cycle(n: int, src: np.ndarray, tgt: np.ndarray, stuck: np.ndarray) -> list[int]:
    """Indices of the nodes of one cycle among the `stuck` nodes (those Kahn could not place)."""
    alive = stuck.copy()
    keep = alive[src] & alive[tgt]
    s, t = src[keep], tgt[keep]
    # strip nodes without a successor inside the stuck set until every node has one (vectorised)
    while True:
        has_succ = np.zeros(n, dtype=bool)
        has_succ[s] = True
        drop = alive & ~has_succ
        if not drop.any():
            break
        alive &= ~drop
        keep = alive[s] & alive[t]
        s, t = s[keep], t[keep]
    order, ptr = csr_by(s, n)
    succ = t[order]
    start = int(np.flatnonzero(alive)[0])
    seen: dict[int, int] = {}
    path: list[int] = []
    node = start
    while node not in seen:  # walk successors; every alive node has one, so this closes a cycle
        seen[node] = len(path)
        path.append(node)
        node = int(succ[ptr[node]])
    return path[seen[node] :]


def _cycle_error(spec: DagSpec, order: np.ndarray, src: np.ndarray, tgt: np.ndarray, stuck: np.ndarray) -> DataError:
    n = order.size
    cycle = find_cycle(n, src, tgt, stuck)
    ids = [int(spec.ids[order[k]]) for k in cycle]
    a = np.asarray(cycle, dtype=np.int64)
    b = np.roll(a, -1)
    edge_keys = src.astype(np.int64) * n + tgt
    hits = np.flatnonzero(np.isin(edge_keys, a * n + b))
    by_key = dict(zip(edge_keys[hits].tolist(), hits.tolist()))
    lines = [by_key.get(int(x) * n + int(y)) for x, y in zip(a, b)]
    shown = " -> ".join(str(i) for i in ids[: MAX_LISTED * 4]) + (" -> ..." if len(ids) > MAX_LISTED * 4 else "")
    where = ", ".join(str(i + 1) for i in lines if i is not None)
    first = next((i + 1 for i in lines if i is not None), None)
    return DataError(
        spec.edges_name,
        first,
        f"cycle: {shown} -> {ids[0]} (edges on lines {where}); {int(stuck.sum())} nodes lie on or behind cycles",
    )


def levelise(spec: DagSpec) -> DagNetwork:
    """Check a spec, group its nodes by level and lay them out for the engines (see DagNetwork)."""
    order, src, tgt = index_edges(spec)
    n = order.size
    is_input = spec.role[order] == INPUT
    level, placed = longest_path_levels(n, src, tgt, is_input)
    if not placed.all():
        raise _cycle_error(spec, order, src, tgt, ~placed)
    # layout: level ascending, then id ascending (index k is the id rank, so sort by index)
    layout = np.lexsort((np.arange(n), level))
    row_of = np.empty(n, dtype=np.int64)
    row_of[layout] = np.arange(n)
    rsrc, rtgt = row_of[src], row_of[tgt]
    by_edge = np.lexsort((rsrc, rtgt))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rtgt, minlength=n), out=indptr[1:])
    lv = level[layout]
    n_levels = int(lv[-1]) + 1
    level_ptr = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(np.bincount(lv, minlength=n_levels), out=level_ptr[1:])
    file_rows = order[layout]
    return DagNetwork(
        ids=spec.ids[file_rows].astype(np.int64),
        bias=spec.bias[file_rows].astype(np.float32),
        activation=spec.activation[file_rows].astype(np.int8),
        role=spec.role[file_rows].astype(np.int8),
        level=lv.astype(np.int32),
        level_ptr=level_ptr,
        indptr=indptr,
        sources=rsrc[by_edge].astype(np.int32),
        weights=spec.weight[by_edge].astype(np.float32),
        meta={"nodes_source": spec.nodes_name, "edges_source": spec.edges_name},
    )


def levels_by_walk(spec: DagSpec) -> dict[int, int]:
    """Independent reference: each node's level by a per-node depth-first walk (plain Python).

    Slow (a Python step per edge); for validation on small networks. Returns {id: level}.
    Assumes the spec passed `levelise` (acyclic).
    """
    preds: dict[int, list[int]] = {int(i): [] for i in spec.ids}
    for s, t in zip(spec.source.tolist(), spec.target.tolist()):
        preds[t].append(s)
    role = {int(i): int(r) for i, r in zip(spec.ids, spec.role)}
    level: dict[int, int] = {}
    for root in preds:
        stack = [root]
        while stack:
            v = stack[-1]
            if v in level:
                stack.pop()
                continue
            todo = [u for u in preds[v] if u not in level]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if role[v] == INPUT:
                level[v] = 0
            else:
                level[v] = 1 + max((level[u] for u in preds[v]), default=0)
    return level
