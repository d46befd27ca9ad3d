"""Inference engines behind one interface: `cpu` (reference) and `cuda` (pycuda kernels)."""
from __future__ import annotations

from .base import Engine, InferenceResult, EngineUnavailable, get_engine

__all__ = ["Engine", "InferenceResult", "EngineUnavailable", "get_engine"]
