"""Compiled CPU loops (numba) for DAG networks: one node at a time, or threads over nodes or columns.

`values[slot, j]` is a node's value for input vector j (node-major, see liveness.py). A node
sums w * value over its incoming edges in edge order (float32, the same order as the GPU
lanes' serial part), then adds its bias and applies its activation, writing its own row in
place: no node of a group reads the row of another node of that group (liveness.py), so no
temporary is needed. Compiled on first use and cached on disk (numba `cache=True`).

* run_sequential: nodes in layout (topological) order on one thread, like a C loop; at
  batch 1 the inner loop over the batch is dropped (a scalar sum per node).
* run_columns: threads split the batch into column ranges; each runs the whole network on
  its range, so no thread waits for another (for batches of a few dozen vectors or more).
* run_groups: groups one after another, threads split each group's nodes (small batches);
  a group with too little work (`shared[g]` false) stays on the calling thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# activation codes, as in network.py (numba needs them as plain globals)
_RELU, _RELU_CLIP, _SIGMOID, _TANH, _RELU_CLIP1 = 1, 2, 3, 4, 5


@njit(cache=True, nogil=True, inline="always")
def _act(z, code):
    if code == _RELU:
        return max(z, np.float32(0.0))
    if code == _RELU_CLIP:
        return min(max(z, np.float32(0.0)), np.float32(32.0))
    if code == _SIGMOID:
        return np.float32(1.0 / (1.0 + math.exp(-z)))
    if code == _TANH:
        return np.float32(math.tanh(z))
    if code == _RELU_CLIP1:
        return min(max(z, np.float32(0.0)), np.float32(1.0))
    return z


@njit(cache=True, nogil=True)
def _nodes(values, v0, v1, c0, c1, indptr, src_slot, weights, bias, act, slot):
    """Nodes v0 .. v1 - 1 over columns c0 .. c1 - 1. A plain function, never inlined into a
    parallel loop: numba compiles parfor bodies without vectorising these inner loops."""
    for v in range(v0, v1):
        d = slot[v]
        b = bias[v]
        code = act[v]
        e0, e1 = indptr[v], indptr[v + 1]
        if c1 - c0 == 1:  # one input vector: a scalar sum, no inner loop
            acc = np.float32(0.0)
            for e in range(e0, e1):
                acc += weights[e] * values[src_slot[e], c0]
            values[d, c0] = _act(acc + b, code)
            continue
        out = values[d, c0:c1]  # 1-D row views: the loops below vectorise
        out[:] = 0.0
        for e in range(e0, e1):
            w = weights[e]
            src = values[src_slot[e], c0:c1]
            for j in range(out.size):
                out[j] += w * src[j]
        for j in range(out.size):
            out[j] = _act(out[j] + b, code)


@njit(cache=True, nogil=True)
def run_sequential(values, first, indptr, src_slot, weights, bias, act, slot):
    _nodes(values, first, indptr.size - 1, 0, values.shape[1], indptr, src_slot, weights, bias, act, slot)


@njit(cache=True, nogil=True, parallel=True)
def run_columns(values, first, indptr, src_slot, weights, bias, act, slot, bounds):
    for c in prange(bounds.size - 1):
        _nodes(values, first, indptr.size - 1, bounds[c], bounds[c + 1], indptr, src_slot, weights, bias, act, slot)


@njit(cache=True, nogil=True, parallel=True)
def run_groups(values, level_ptr, indptr, src_slot, weights, bias, act, slot, shared, chunks):
    batch = values.shape[1]
    for g in range(1, level_ptr.size - 1):
        lo, hi = level_ptr[g], level_ptr[g + 1]
        if not shared[g]:  # too little work to wake the other threads for
            _nodes(values, lo, hi, 0, batch, indptr, src_slot, weights, bias, act, slot)
        else:
            step = (hi - lo + chunks - 1) // chunks
            for c in prange(chunks):
                _nodes(
                    values,
                    min(hi, lo + c * step),
                    min(hi, lo + (c + 1) * step),
                    0,
                    batch,
                    indptr,
                    src_slot,
                    weights,
                    bias,
                    act,
                    slot,
                )
