"""The CuPy peer: what a user of cupyx.scipy.sparse would write, one sparse product per group.

Per group g: gather the distinct source rows the group reads (Vg = V[sources_g], node-major,
C order), Z = A_g @ Vg with A_g the group's incoming edges as a cupyx CSR matrix
(columns renumbered to those sources; cuSPARSE SpMM; cupyx makes its dense operand
column-major first), then one fused element-wise kernel for bias and activation that
writes the group's rows of V. Timed with CUDA events like the pycuda engines.
"""

from __future__ import annotations

import time

import numpy as np

from .engine import DagEngine, DagResult, EngineUnavailable, dense_inputs
from .network import DagNetwork

_ACT = r"""
float v = z + b;
switch (code) {
    case 1: y = fmaxf(v, 0.0f); break;
    case 2: y = fminf(fmaxf(v, 0.0f), 32.0f); break;
    case 3: y = 1.0f / (1.0f + expf(-v)); break;
    case 4: y = tanhf(v); break;
    default: y = v;
}
"""


class CupyEngine(DagEngine):
    name = "cupy"

    def __init__(self, device: int = 0, **_ignored):
        try:
            import cupy as cp
            import cupyx.scipy.sparse as csp
        except ImportError as err:
            raise EngineUnavailable(f"the CuPy peer needs cupy ({err})") from err
        try:
            cp.cuda.Device(device).use()
            self.props = cp.cuda.runtime.getDeviceProperties(device)
        except Exception as err:
            raise EngineUnavailable(f"CuPy sees no usable GPU: {err}") from err
        self.cp, self.csp = cp, csp
        self.act = cp.ElementwiseKernel("float32 z, float32 b, int8 code", "float32 y", _ACT, "spdnn_dag_act")

    def device(self) -> str:
        name = self.props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        cp, csp = self.cp, self.csp
        self.groups = []
        lp, ip = net.level_ptr, net.indptr
        for g in range(1, net.n_levels):
            lo, hi = int(lp[g]), int(lp[g + 1])
            a, b = int(ip[lo]), int(ip[hi])
            src = net.sources[a:b]
            used, local = np.unique(src, return_inverse=True)
            if used.size == 0:  # bias-only group: A_g @ V is zero
                used = np.zeros(1, dtype=np.int32)
            mat = csp.csr_matrix(
                (
                    cp.asarray(net.weights[a:b]),
                    cp.asarray(local.astype(np.int32)),
                    cp.asarray((ip[lo : hi + 1] - a).astype(np.int32)),
                ),
                shape=(hi - lo, used.size),
            )
            self.groups.append(
                (
                    lo,
                    hi,
                    mat,
                    cp.asarray(used.astype(np.int64)),
                    cp.asarray(net.bias[lo:hi, None]),
                    cp.asarray(net.activation[lo:hi, None]),
                )
            )
        self.out_rows = cp.asarray(net.output_rows)

    def infer(self, inputs) -> DagResult:
        cp, net = self.cp, self.net
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        values = cp.empty((net.n_nodes, x.shape[0]), dtype=cp.float32)
        values[: net.n_inputs] = cp.asarray(np.ascontiguousarray(x.T))
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for lo, hi, mat, used, bias, code in self.groups:
            z = mat @ values[used]
            self.act(z, bias, code, values[lo:hi])
        out = values[self.out_rows]
        end.record()
        end.synchronize()
        seconds = cp.cuda.get_elapsed_time(start, end) / 1e3
        outputs = np.ascontiguousarray(cp.asnumpy(out).T)
        del values
        return DagResult(
            outputs, seconds, time.perf_counter() - wall, self.name, self.device(), details={"groups": len(self.groups)}
        )
