"""Interpreted CPU engines: the naive sequential reference (node by node) and a vectorised one.

Values are kept node-major: V[slot, j] is a node's value for input vector j, so a node's
incoming values are whole rows; rows are freed once no later node reads them (liveness.py,
`free_values`). Both engines accumulate in float32.

* SequentialEngine: nodes one at a time in layout (topological) order; per node one dot
  product of its incoming weights with its sources' value rows (numpy / BLAS), then bias and
  activation. A Python step per node, as in a naive implementation: at small batches it
  measures the interpreter, not the machine. The compiled engines (compiled.py) are the
  baselines to compare with.
* VectorisedEngine: one scipy.sparse product per dependency group, A_g @ V, with A_g the
  group's incoming edges (CSR, group nodes x value slots), then bias and activation.

Neither extrapolates: a run is timed in full or not at all.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..devices import cpu_model
from .engine import DagEngine, DagResult, dense_inputs
from .liveness import plan_values
from .network import DagNetwork, activate, activate_rows


class _CpuBase(DagEngine):
    def __init__(self, free_values: bool = True):
        self.free_values = free_values

    def device(self) -> str:
        return cpu_model()

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        self.plan = plan_values(net, self.free_values)

    def _start(self, inputs) -> tuple[np.ndarray, float]:
        net = self.net
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        values = np.empty((max(1, self.plan.n_slots), x.shape[0]), dtype=np.float32)
        values[: net.n_inputs] = x.T  # inputs hold slots 0 .. inputs - 1
        return values, wall

    def _finish(self, values: np.ndarray, wall: float, t0: float, details: dict) -> DagResult:
        out = np.ascontiguousarray(values[self.plan.slot[self.net.output_rows]].T)
        seconds = time.perf_counter() - t0
        details = {**details, "value_slots": self.plan.n_slots, "value_bytes": self.plan.value_bytes(values.shape[1])}
        return DagResult(out, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)


class SequentialEngine(_CpuBase):
    """Node by node in topological order (the naive sequential reference); see the module docstring."""

    name = "sequential"

    def infer(self, inputs) -> DagResult:
        net = self.net
        values, wall = self._start(inputs)
        indptr, src, weights = net.indptr, self.plan.src_slot, net.weights
        bias, codes, slot = net.bias, net.activation, self.plan.slot
        t0 = time.perf_counter()
        for v in range(net.n_inputs, net.n_nodes):
            a, b = indptr[v], indptr[v + 1]
            z = weights[a:b] @ values[src[a:b]]
            z += bias[v]
            values[slot[v]] = activate(z, int(codes[v]))
        return self._finish(values, wall, t0, {})


class VectorisedEngine(_CpuBase):
    """One scipy.sparse product per dependency group; see the module docstring."""

    name = "vectorised"

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        self.groups = []
        lp, ip, n_slots = net.level_ptr, net.indptr, max(1, self.plan.n_slots)
        for g in range(1, net.n_levels):
            lo, hi = int(lp[g]), int(lp[g + 1])
            a, b = int(ip[lo]), int(ip[hi])
            mat = sp.csr_matrix(
                (net.weights[a:b], self.plan.src_slot[a:b], ip[lo : hi + 1] - a), shape=(hi - lo, n_slots)
            )
            codes = net.activation[lo:hi]
            self.groups.append(
                (self.plan.slot[lo:hi], mat, net.bias[lo:hi, None], codes, bool(np.all(codes == codes[0])))
            )

    def infer(self, inputs) -> DagResult:
        values, wall = self._start(inputs)
        t0 = time.perf_counter()
        for slots, mat, bias, codes, uniform in self.groups:
            z = np.asarray(mat @ values, dtype=np.float32)
            z += bias
            values[slots] = activate(z, int(codes[0])) if uniform else activate_rows(z, codes)
        return self._finish(values, wall, t0, {"groups": len(self.groups)})
