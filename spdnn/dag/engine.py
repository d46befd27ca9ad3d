"""The DAG engine interface (like spdnn.engines.base): prepare a network, infer a batch.

It knows no engine: the engines by name (get_dag_engine, ENGINES, the "auto" rule) are in
spdnn.dag.registry, which imports the engines (they import this module, never the registry).

Inputs are a batch of input vectors, shape (batch, inputs) (dense array or scipy.sparse),
column i being the input node of the i-th smallest id. `infer` returns the output nodes'
values, shape (batch, outputs), columns in ascending output id.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..engines.base import EngineUnavailable
from .network import DagNetwork

__all__ = ["DagEngine", "DagResult", "EngineUnavailable", "dense_inputs"]


@dataclass
class DagResult:
    """outputs: float32 (batch, outputs). seconds: inference only (network already prepared;
    for the GPU engines, CUDA events around the kernels, inputs already on the device).
    end_to_end_seconds: wall time of the whole `infer` call (transfers and layout included).
    No engine extrapolates: `complete` and `fraction` stay True and 1.0 (kept for old records)."""

    outputs: np.ndarray | None
    seconds: float
    end_to_end_seconds: float
    engine: str
    device: str
    complete: bool = True
    fraction: float = 1.0
    details: dict = field(default_factory=dict)


class DagEngine(abc.ABC):
    """An engine for levelised DAG networks. `prepare` is untimed; `infer` is what is timed."""

    name = "abstract"

    @abc.abstractmethod
    def device(self) -> str:
        """What runs the inference (CPU model, GPU name)."""

    def prepare(self, net: DagNetwork) -> None:
        self.net = net

    @abc.abstractmethod
    def infer(self, inputs: np.ndarray | sp.spmatrix) -> DagResult:
        """Run the prepared network on a batch of input vectors."""


def dense_inputs(inputs: np.ndarray | sp.spmatrix, n_inputs: int) -> np.ndarray:
    """The batch as a C-contiguous float32 (batch, n_inputs) array, checked."""
    x = inputs.toarray() if sp.issparse(inputs) else np.asarray(inputs)  # type: ignore[union-attr]
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != n_inputs:
        raise ValueError(f"inputs have shape {x.shape}, the network takes {n_inputs} inputs per vector")
    return np.ascontiguousarray(x, dtype=np.float32)
