"""The CPU reference engine: the challenge's exact semantics with scipy.sparse.

Y_{k+1} = min(max(Y_k W_k + b on the nonzeros, 0), 32), with active-row compaction:
rows that become all zero are dropped from later layers and their indices kept.
"""
from __future__ import annotations

import platform
import time

import numpy as np
import scipy.sparse as sp

from .. import challenge
from .base import Engine, InferenceResult


def layer_step(y: sp.csr_matrix, w: sp.csr_matrix, bias: float) -> sp.csr_matrix:
    """One layer on CSR features: multiply, bias on the structural nonzeros, ReLU, clip at 32."""
    z = (y @ w).tocsr()
    # Sorted columns make the next product add each output's terms in ascending input order:
    # a fixed, documented order (the GPU kernels use the same one and agree bit for bit).
    z.sort_indices()
    z.data += np.float32(bias)
    np.clip(z.data, 0.0, challenge.CLIP, out=z.data)
    z.eliminate_zeros()
    return z


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux) and its core count."""
    import os

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


class CpuEngine(Engine):
    """scipy.sparse reference, vectorised over all inputs; the truth for synthetic networks."""

    name = "cpu"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def device(self) -> str:
        return cpu_model()

    def infer(self, inputs: sp.csr_matrix) -> InferenceResult:
        weights, layers = self.weights, self.n_layers
        bias = np.float32(weights.bias)
        mats = [weights.layer(k) for k in range(layers)]  # zero-copy views, built outside the timer
        start = time.perf_counter()
        y = sp.csr_matrix(inputs, dtype=np.float32, copy=True)
        alive = np.arange(y.shape[0], dtype=np.int64)
        active = []
        for w in mats:
            y = layer_step(y, w, bias)
            keep = np.flatnonzero(np.diff(y.indptr))
            if keep.size < y.shape[0]:
                y = y[keep]
                alive = alive[keep]
            active.append(int(keep.size))
        seconds = time.perf_counter() - start
        return InferenceResult(categories=alive, active_rows=active, seconds=seconds,
                               engine=self.name, device=self.device(), values=y)
