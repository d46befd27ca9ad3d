"""Inference engines behind one interface: `cpu` (reference) and `cuda` (pycuda kernels).

The interface is spdnn.engines.base; the engines by name (get_engine, the "auto" rule) are in
spdnn.engines.registry, re-exported here.
"""

from __future__ import annotations

from .base import Engine, EngineOptionError, EngineUnavailable, InferenceResult
from .registry import check_engine_options, engine_options, get_engine

__all__ = [
    "Engine",
    "EngineOptionError",
    "EngineUnavailable",
    "InferenceResult",
    "check_engine_options",
    "engine_options",
    "get_engine",
]
