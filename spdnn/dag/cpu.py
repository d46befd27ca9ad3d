"""CPU engines: the sequential reference (node by node, the paper's baseline) and a vectorised one.

Values are kept node-major: V[row, j] is node `row`'s value for input vector j, so a node's
incoming values are whole rows. Both engines accumulate in float32.

* SequentialEngine: nodes one at a time in layout (topological) order; per node one dot
  product of its incoming weights with its sources' value rows (numpy / BLAS), then bias and
  activation. A Python step per node, as in a plain sequential implementation; the batch
  of input vectors is the only thing vectorised.
* VectorisedEngine: one scipy.sparse product per dependency group, A_g @ V[:start_g], with
  A_g the group's incoming edges (CSR, groups x earlier nodes), then bias and activation.

Both take `max_seconds`: stop once that much time is spent and report the time
extrapolated per edge (complete=False), for networks too large to run fully in a benchmark.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..engines.cpu import cpu_model
from .engine import DagEngine, DagResult, dense_inputs
from .network import DagNetwork, activate, activate_rows


class _CpuBase(DagEngine):
    def __init__(self, max_seconds: float | None = None, **_ignored):
        self.max_seconds = max_seconds

    def device(self) -> str:
        return cpu_model()

    def _start(self, inputs) -> tuple[np.ndarray, np.ndarray, float]:
        net = self.net
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        values = np.empty((net.n_nodes, x.shape[0]), dtype=np.float32)
        values[: net.n_inputs] = x.T
        return x, values, wall

    def _finish(self, values: np.ndarray, wall: float, t0: float, done_edges: int, details: dict) -> DagResult:
        net = self.net
        seconds = time.perf_counter() - t0
        complete = done_edges >= net.n_edges
        fraction = done_edges / max(1, net.n_edges)
        out = np.ascontiguousarray(values[net.output_rows].T) if complete else None
        if not complete:
            details = {**details, "extrapolated": f"timed {fraction:.3%} of the edges, time scaled per edge"}
            seconds = seconds / max(fraction, 1e-12)
        return DagResult(out, seconds, time.perf_counter() - wall, self.name, self.device(), complete, fraction, details)


class SequentialEngine(_CpuBase):
    """Node by node in topological order (the sequential baseline); see the module docstring."""

    name = "sequential"

    def infer(self, inputs) -> DagResult:
        net = self.net
        _, values, wall = self._start(inputs)
        indptr, sources, weights = net.indptr, net.sources, net.weights
        bias, codes = net.bias, net.activation
        budget = self.max_seconds
        t0 = time.perf_counter()
        done = net.n_nodes
        for v in range(net.n_inputs, net.n_nodes):
            a, b = indptr[v], indptr[v + 1]
            z = weights[a:b] @ values[sources[a:b]]
            z += bias[v]
            values[v] = activate(z, int(codes[v]))
            if budget is not None and (v & 255) == 0 and time.perf_counter() - t0 > budget:
                done = v + 1
                break
        return self._finish(values, wall, t0, int(indptr[done]), {})


class VectorisedEngine(_CpuBase):
    """One scipy.sparse product per dependency group; see the module docstring."""

    name = "vectorised"

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        self.groups = []
        lp, ip = net.level_ptr, net.indptr
        for g in range(1, net.n_levels):
            lo, hi = int(lp[g]), int(lp[g + 1])
            a, b = int(ip[lo]), int(ip[hi])
            mat = sp.csr_matrix((net.weights[a:b], net.sources[a:b], ip[lo:hi + 1] - a), shape=(hi - lo, lo))
            codes = net.activation[lo:hi]
            self.groups.append((lo, hi, mat, net.bias[lo:hi, None], codes, bool(np.all(codes == codes[0]))))

    def infer(self, inputs) -> DagResult:
        net = self.net
        _, values, wall = self._start(inputs)
        budget = self.max_seconds
        t0 = time.perf_counter()
        done = net.n_nodes
        for lo, hi, mat, bias, codes, uniform in self.groups:
            z = np.asarray(mat @ values[:lo], dtype=np.float32)
            z += bias
            values[lo:hi] = activate(z, int(codes[0])) if uniform else activate_rows(z, codes)
            if budget is not None and time.perf_counter() - t0 > budget:
                done = hi
                break
        return self._finish(values, wall, t0, int(net.indptr[done]), {"groups": len(self.groups)})
