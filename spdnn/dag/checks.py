"""Structural checks of a DagSpec that need no graph traversal; every error names the nodes.

Node ids must be unique; every edge must join two listed nodes (no dangling reference),
appear once (no duplicate (source, target) pair) and not end at an input node. Cycles are
found during levelisation (levels.py). Errors name ids as written and the file lines.
"""

from __future__ import annotations

import numpy as np

from ..io.errors import DataError
from .network import INPUT, DagSpec

MAX_LISTED = 8  # offenders listed in one message


def _more(count: int) -> str:
    return f" (and {count - MAX_LISTED} more)" if count > MAX_LISTED else ""


def node_order(spec: DagSpec) -> tuple[np.ndarray, np.ndarray]:
    """(order, sorted_ids): order[k] is the file row of the k-th smallest id. Raises on duplicate ids."""
    order = np.argsort(spec.ids, kind="stable")
    sorted_ids = spec.ids[order]
    dup = np.flatnonzero(np.diff(sorted_ids) == 0)
    if dup.size:
        listed = ", ".join(f"{sorted_ids[d]} (lines {order[d] + 1} and {order[d + 1] + 1})" for d in dup[:MAX_LISTED])
        raise DataError(spec.nodes_name, int(order[dup[0] + 1]) + 1, f"duplicate node id: {listed}{_more(dup.size)}")
    if not np.any(spec.role == INPUT):
        raise DataError(spec.nodes_name, None, "no node has role input")
    return order, sorted_ids


def index_edges(spec: DagSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the edges and map ids to node indices (rank of the id among all ids).

    Returns (order, source index int64[E], target index int64[E]) where order maps an index
    to its file row (order[k] = row of the k-th smallest id).
    """
    order, sorted_ids = node_order(spec)
    n = sorted_ids.size
    index = []
    for label, ids in (("source", spec.source), ("target", spec.target)):
        pos = np.searchsorted(sorted_ids, ids)
        pos_c = np.minimum(pos, n - 1)
        bad = np.flatnonzero((pos >= n) | (sorted_ids[pos_c] != ids))
        if bad.size:
            listed = ", ".join(f"{ids[b]} (line {b + 1})" for b in bad[:MAX_LISTED])
            raise DataError(
                spec.edges_name,
                int(bad[0]) + 1,
                f"dangling edge {label}: node {listed}{_more(bad.size)} not in {spec.nodes_name}",
            )
        index.append(pos_c.astype(np.int64))
    src, tgt = index
    into_input = np.flatnonzero(spec.role[order[tgt]] == INPUT)
    if into_input.size:
        listed = ", ".join(f"{spec.source[b]} -> {spec.target[b]} (line {b + 1})" for b in into_input[:MAX_LISTED])
        raise DataError(
            spec.edges_name, int(into_input[0]) + 1, f"input node with incoming edge: {listed}{_more(into_input.size)}"
        )
    key = tgt * n + src
    by_key = np.argsort(key, kind="stable")
    sk = key[by_key]
    dup = np.flatnonzero(np.diff(sk) == 0)
    if dup.size:
        listed = ", ".join(
            f"{spec.source[by_key[d]]} -> {spec.target[by_key[d]]} (lines {by_key[d] + 1} and {by_key[d + 1] + 1})"
            for d in dup[:MAX_LISTED]
        )
        raise DataError(spec.edges_name, int(by_key[dup[0] + 1]) + 1, f"duplicate edge: {listed}{_more(dup.size)}")
    return order, src, tgt
