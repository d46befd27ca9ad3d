"""The engine interface every inference engine implements, and the engine chooser."""
from __future__ import annotations

import abc
import importlib
import inspect
import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..config import ConfigError
from ..io.cache import Weights

log = logging.getLogger(__name__)


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


# Where each engine lives; its constructor's keyword parameters are its options.
_ENGINE_CLASSES = {"cpu": ("spdnn.engines.cpu", "CpuEngine"), "cuda": ("spdnn.engines.cuda", "CudaEngine")}


def engine_options(name: str) -> list[str]:
    """The option names `name` ('cpu', 'cuda', or 'auto': those of either) accepts, read from
    the constructors without creating an engine (no GPU needed)."""
    names = ["cpu", "cuda"] if name == "auto" else [name]
    found: list[str] = []
    for engine in names:
        module, cls = _ENGINE_CLASSES[engine]
        params = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
        found += [p for p in params if p != "self" and p not in found]
    return found


def check_engine_options(name: str, options: dict) -> None:
    """Raise EngineOptionError naming every option `name` does not have (before any data is loaded)."""
    if name not in ("cpu", "cuda", "auto"):
        raise EngineOptionError(f"unknown engine {name!r}: choose cpu, cuda or auto")
    known = engine_options(name)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise EngineOptionError(f"engine {name} has no option {', '.join(map(repr, unknown))} "
                                f"(its options: {', '.join(known)})")


class EngineOptionError(ConfigError):
    """An engine option that the chosen engine does not have: a user error, named."""


def get_engine(name: str, **options) -> Engine:
    """Return an engine by name: 'cpu', 'cuda', or 'auto' (cuda if a GPU is usable, else cpu, said in the log)."""
    if name == "cpu":
        from .cpu import CpuEngine

        return CpuEngine(**options)
    if name == "cuda":
        from .cuda import CudaEngine  # raises EngineUnavailable with the reason

        return CudaEngine(**options)
    if name == "auto":
        try:
            from .cuda import CudaEngine

            return CudaEngine(**options)
        except (EngineUnavailable, ImportError) as err:
            log.warning("engine auto: using the CPU reference engine, because the CUDA engine is unavailable: %s", err)
            from .cpu import CpuEngine

            return CpuEngine(**{k: v for k, v in options.items() if k in ("threads",)})
    raise ValueError(f"unknown engine {name!r}: choose cpu, cuda or auto")
