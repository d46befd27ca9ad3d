"""Layered sparse networks of any widths, any nonzeros per row, per-neuron biases; a CPU engine.

The challenge's layers generalised: layer k maps width_k neurons to width_{k+1} through a
sparse W_k (W_k[i, j] is an edge from neuron i to neuron j, row vectors times W as in the
challenge), then adds a bias per neuron (everywhere, not only on the nonzeros) and applies
the layer's activation: Y_{k+1} = act_k(Y_k W_k + b_k). Dense layers are simply W_k with every
entry present. `to_spec` writes the same network as a DAG, so the DAG engines and this
layered engine can be checked against each other.

LayeredEngine keeps the features node-major (width x batch, float32), like the DAG engines,
and runs one scipy.sparse product per layer: Z = W_k^T Y.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..devices import cpu_model
from .engine import DagEngine, DagResult, dense_inputs
from .network import ACTIVATIONS, HIDDEN, IDENTITY, INPUT, OUTPUT, DagSpec, activate


@dataclass
class LayeredNetwork:
    """weights[k]: CSR (width_k, width_{k+1}); biases[k]: float32[width_{k+1}]; activations[k]: code."""

    weights: list[sp.csr_matrix]
    biases: list[np.ndarray]
    activations: list[int]
    name: str = "layered"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.weights) == len(self.biases) == len(self.activations)) or not self.weights:
            raise ValueError("a layered network needs as many weights, biases and activations, at least one")
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if b.shape != (w.shape[1],):
                raise ValueError(f"layer {k}: {b.size} biases for {w.shape[1]} neurons")
            if k and w.shape[0] != self.weights[k - 1].shape[1]:
                raise ValueError(
                    f"layer {k} takes {w.shape[0]} neurons, layer {k - 1} gives {self.weights[k - 1].shape[1]}"
                )
            if not 0 <= self.activations[k] < len(ACTIVATIONS):
                raise ValueError(f"layer {k}: unknown activation code {self.activations[k]}")

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    @property
    def n_edges(self) -> int:
        return int(sum(w.nnz for w in self.weights))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "layers": len(self.weights),
            "widths": self.widths,
            "edges": self.n_edges,
            "nonzeros_per_layer": [int(w.nnz) for w in self.weights],
        }

    def to_spec(self) -> DagSpec:
        """The same network as a DAG: neuron j of layer k has id offset_k + j + 1 (offsets by widths)."""
        widths = self.widths
        offsets = np.concatenate(([0], np.cumsum(widths)))
        n = int(offsets[-1])
        src, tgt, wts = [], [], []
        for k, w in enumerate(self.weights):
            coo = sp.coo_matrix(w)
            src.append(offsets[k] + coo.row.astype(np.int64) + 1)
            tgt.append(offsets[k + 1] + coo.col.astype(np.int64) + 1)
            wts.append(coo.data.astype(np.float32))
        role = np.full(n, HIDDEN, dtype=np.int8)
        role[: widths[0]] = INPUT
        role[offsets[-2] :] = OUTPUT
        act = np.full(n, IDENTITY, dtype=np.int8)
        bias = np.zeros(n, dtype=np.float32)
        for k in range(len(self.weights)):
            act[offsets[k + 1] : offsets[k + 2]] = self.activations[k]
            bias[offsets[k + 1] : offsets[k + 2]] = self.biases[k]
        return DagSpec(
            np.arange(1, n + 1, dtype=np.int64),
            bias,
            act,
            role,
            np.concatenate(src),
            np.concatenate(tgt),
            np.concatenate(wts),
            nodes_name=f"<{self.name} nodes>",
            edges_name=f"<{self.name} edges>",
        )


class LayeredEngine(DagEngine):
    """One sparse product per layer on node-major dense features (CPU); see the module docstring."""

    name = "layered"
    net: LayeredNetwork  # type: ignore[assignment]  # prepare takes the layered form

    def device(self) -> str:
        return cpu_model()

    def prepare(self, net: LayeredNetwork) -> None:  # type: ignore[override]
        self.net = net
        self.layers = [
            (sp.csr_matrix(w.T, dtype=np.float32), np.asarray(b, np.float32)[:, None], int(a))
            for w, b, a in zip(net.weights, net.biases, net.activations)
        ]

    def infer(self, inputs) -> DagResult:
        x = dense_inputs(inputs, self.net.widths[0])
        wall = time.perf_counter()
        t0 = time.perf_counter()
        y = np.ascontiguousarray(x.T)
        for wt, b, code in self.layers:
            y = np.asarray(wt @ y, dtype=np.float32)
            y += b
            activate(y, code)
        out = np.ascontiguousarray(y.T)
        seconds = time.perf_counter() - t0
        return DagResult(
            out, seconds, time.perf_counter() - wall, self.name, self.device(), details={"layers": len(self.layers)}
        )
