"""The engine interface every inference engine implements (Engine, InferenceResult) and its errors.

It knows no engine: the engines by name, their options and the "auto" rule are in
spdnn.engines.registry, which imports the engines (they import this module, never the registry).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..io.cache import Weights


class EngineUnavailable(RuntimeError):
    """The requested engine cannot run here (no GPU, no pycuda): a clear stop, never a fallback."""


@dataclass
class InferenceResult:
    """What one inference returns.

    categories: 0-based indices of the input rows with any nonzero after the last layer, sorted.
    active_rows: rows still nonzero after each layer (length = layers).
    seconds: inference only (weights and inputs already on the device).
    values: the final nonzero feature rows (CSR, rows = categories), for value comparisons.
    """

    categories: np.ndarray
    active_rows: list[int]
    seconds: float
    engine: str
    device: str
    values: sp.csr_matrix | None = None
    details: dict = field(default_factory=dict)


class Engine(abc.ABC):
    """An inference engine. `prepare` moves weights where they run; `infer` is what is timed."""

    name: str = "abstract"

    @abc.abstractmethod
    def device(self) -> str:
        """Human-readable name of what runs the inference (CPU model, GPU name)."""

    def prepare(self, weights: Weights, layers: int) -> None:
        """Load the first `layers` layers of the weights (not part of the inference time)."""
        self.weights = weights
        self.n_layers = layers

    @abc.abstractmethod
    def infer(self, inputs: sp.csr_matrix) -> InferenceResult:
        """Run the prepared layers on a CSR matrix of inputs (rows = inputs, cols = N)."""


class EngineOptionError(ConfigError):
    """An engine option that the chosen engine does not have: a user error, named."""
