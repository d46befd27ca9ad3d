"""The DAG engines by name, and their "auto" rule (the challenge engines' one: spdnn.engines.registry).

Imported by none of the engines (they import the interface, spdnn.dag.engine), so the import
graph has no cycle (tests/test_imports.py).
"""

from __future__ import annotations

from ..engines.registry import auto_engine, constructor_options
from .engine import DagEngine

__all__ = ["AUTO_GPU", "AUTO_CPU", "CPU_ENGINES", "ENGINES", "get_dag_engine"]

ENGINES = (
    "sequential",
    "vectorised",
    "compiled",
    "threaded",
    "cuda-thread",
    "cuda-warp",
    "cuda-walk",
    "cuda-lane",
    "cupy",
)
CPU_ENGINES = ("sequential", "vectorised", "compiled", "threaded")
# what `auto` runs with a usable GPU, and without. cuda-lane: cuda-warp's plan with its runs of small
# groups walked by dag_lane; on an H200 at 1e6 edges, batch 1000, as fast as cuda-warp on every
# wide shape measured (0.99-1.01x) and 5.4x on deep-narrow (docs/dag.md, 2026-12-03)
AUTO_GPU, AUTO_CPU = "cuda-lane", "vectorised"


def _engine(name: str, **options) -> DagEngine:
    if name == "compiled":
        from .compiled import CompiledEngine

        return CompiledEngine(**options)
    if name == "threaded":
        from .compiled import ThreadedEngine

        return ThreadedEngine(**options)
    if name == "sequential":
        from .cpu import SequentialEngine

        return SequentialEngine(**options)
    if name == "vectorised":
        from .cpu import VectorisedEngine

        return VectorisedEngine(**options)
    if name in ("cuda-thread", "cuda-warp", "cuda-walk", "cuda-lane", "cuda"):
        from .cuda import DagCudaEngine

        return DagCudaEngine(
            kernel={"cuda-thread": "thread", "cuda-walk": "walk", "cuda-lane": "lane"}.get(name, "warp"), **options
        )
    if name == "cupy":
        from .peer import CupyEngine

        return CupyEngine(**options)
    raise ValueError(f"unknown DAG engine {name!r}: choose one of {', '.join(ENGINES + ('auto',))}")


def get_dag_engine(name: str, **options) -> DagEngine:
    """An engine by name: sequential, vectorised (interpreted CPU); compiled, threaded (numba CPU);
    cuda-thread, cuda-warp, cuda-walk, cuda-lane (pycuda; cuda-warp walks long runs of small groups
    by itself, cuda-walk and cuda-lane every run they can); cupy (peer); auto: cuda-lane if it can start, else
    vectorised, by the challenge engines' "auto" rule (spdnn.engines.registry.auto_engine: said in
    the log, each engine given the options it has, the others named)."""
    if name != "auto":
        return _engine(name, **options)
    from .cpu import VectorisedEngine
    from .cuda import DagCudaEngine

    gpu_options = [p for p in constructor_options(DagCudaEngine) if p != "kernel"]
    return auto_engine(
        lambda **kept: _engine(AUTO_GPU, **kept),
        gpu_options,
        lambda **kept: _engine(AUTO_CPU, **kept),
        constructor_options(VectorisedEngine),
        options,
        label="dag engine auto",
        gpu_name=f"the {AUTO_GPU} engine",
        cpu_name=f"the {AUTO_CPU} CPU engine",
    )
