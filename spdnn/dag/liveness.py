"""Value rows freed once no later node reads them: a slot per node, reused after its last reader.

An engine keeps one value row (the node's values for the whole batch) per *slot*, not per
node. Node u's slot is released once the dependency group of u's last reader has run; from
the next group on, another node may take it. Outputs are never released. A node nobody
reads (a dead end) holds its slot only while its own group runs. Release is per group, not
per node, so every engine may run a whole group at once (threads, GPU lanes): no node of a
group can overwrite a row that another node of the same group still reads, and a node may
accumulate straight into its own row.

Slots are handed out group by group from a stack of released ones (newest first), then new
ones; the Python loop runs once per group. Inputs get slots 0 .. inputs - 1 in order, so the
batch is copied in as before. `free=False` gives the identity plan (one row per node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .levels import csr_by
from .network import OUTPUT, DagNetwork


@dataclass
class ValuePlan:
    """slot[r]: the value row of node r; src_slot[e]: slot of edge e's source (for the kernels)."""

    slot: np.ndarray  # int32[nodes]
    src_slot: np.ndarray  # int32[edges]
    n_slots: int
    freed: bool

    def value_bytes(self, batch: int) -> int:
        """Bytes of float32 values an engine holds for `batch` input vectors."""
        return self.n_slots * batch * 4


def release_groups(net: DagNetwork) -> np.ndarray:
    """For each node, the group after which its slot may be reused (n_levels for outputs: never)."""
    level = net.level.astype(np.int64)
    readers = np.repeat(level, np.diff(net.indptr))  # level of each edge's target
    last = level.copy()  # a dead end is released after its own group
    if net.n_edges:
        np.maximum.at(last, net.sources, readers)
    last[net.role == OUTPUT] = net.n_levels
    return last


def plan_values(net: DagNetwork, free: bool = True) -> ValuePlan:
    """Assign value slots to the nodes of a levelised network (see the module docstring)."""
    n = net.n_nodes
    if not free:
        slot = np.arange(n, dtype=np.int32)
        return ValuePlan(slot, np.ascontiguousarray(net.sources, dtype=np.int32), n, False)
    release = release_groups(net)
    by_release, release_ptr = csr_by(release, net.n_levels + 1)
    slot = np.empty(n, dtype=np.int32)
    stack = np.empty(n, dtype=np.int32)  # released slots, reused newest first
    top = 0
    n_slots = 0
    lp = net.level_ptr
    for g in range(net.n_levels):
        if g:
            done = by_release[release_ptr[g - 1] : release_ptr[g]]
            stack[top : top + done.size] = slot[done]
            top += done.size
        lo, hi = int(lp[g]), int(lp[g + 1])
        size = hi - lo
        reuse = min(size, top)
        slot[lo : lo + reuse] = stack[top - reuse : top][::-1]
        top -= reuse
        fresh = size - reuse
        slot[lo + reuse : hi] = np.arange(n_slots, n_slots + fresh, dtype=np.int32)
        n_slots += fresh
    return ValuePlan(slot, slot[net.sources].astype(np.int32), int(n_slots), True)


def check_plan(net: DagNetwork, plan: ValuePlan) -> None:
    """Raise AssertionError if a slot is reused while a later node may still read it (for tests)."""
    release = release_groups(net)
    level = net.level
    order = np.lexsort((level, plan.slot))  # nodes by slot, then by level
    s, lv = plan.slot[order], level[order]
    same = s[1:] == s[:-1]
    # the next holder of a slot must belong to a group after the previous holder's release
    clash = same & (lv[1:] <= release[order[:-1]])
    if np.any(clash):
        k = int(np.flatnonzero(clash)[0])
        raise AssertionError(f"slot {s[k]} of node row {order[k]} reused by row {order[k + 1]} before its release")
    if np.unique(plan.slot[net.output_rows]).size != net.n_outputs:
        raise AssertionError("two outputs share a slot")
