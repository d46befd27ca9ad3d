"""The engine registry: engines by name, their options, and the one "auto" rule.

The interface (spdnn.engines.base) knows no engine; this module knows them all and is imported
by none of them, so the package's import graph has no cycle (tests/test_imports.py). The DAG
engines' registry (spdnn.dag.registry) uses the same option reading and the same "auto" rule.

The "auto" rule (`auto_engine`): the GPU engine if it can start, else the CPU engine, said in the
log. Each engine gets the options it has (read from its constructor); the ones it has none of
are named in a warning, never passed (a TypeError) nor dropped in silence.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import TypeVar

from .base import Engine, EngineOptionError, EngineUnavailable

log = logging.getLogger(__name__)

__all__ = [
    "ENGINES",
    "EngineOptionError",
    "auto_engine",
    "check_engine_options",
    "constructor_options",
    "engine_class",
    "engine_options",
    "get_engine",
    "split_options",
]

# Where each engine lives; its constructor's keyword parameters are its options.
_ENGINE_CLASSES = {"cpu": ("spdnn.engines.cpu", "CpuEngine"), "cuda": ("spdnn.engines.cuda", "CudaEngine")}
ENGINES = ("cpu", "cuda", "auto")

E = TypeVar("E")


def constructor_options(cls: type) -> list[str]:
    """The keyword parameters of `cls`'s constructor (its options), without creating one."""
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]  # a class, not an instance
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def split_options(options: dict, known: list[str]) -> tuple[dict, list[str]]:
    """(the options whose names are in `known`, the names of the others), in the given order."""
    return {k: v for k, v in options.items() if k in known}, [k for k in options if k not in known]


def auto_engine(
    gpu: Callable[..., E],
    gpu_options: list[str],
    cpu: Callable[..., E],
    cpu_options: list[str],
    options: dict,
    *,
    label: str = "engine auto",
    gpu_name: str = "the CUDA engine",
    cpu_name: str = "the CPU reference engine",
) -> E:
    """The one "auto" rule: `gpu(**its options)` if it starts, else `cpu(**its options)`, the
    fallback said in the log (a warning with the reason). Options the chosen engine has none of
    (`gpu_options` / `cpu_options`: its option names) are left out and named in a warning."""
    try:
        kept, dropped = split_options(options, gpu_options)
        engine = gpu(**kept)
        chosen, known = gpu_name, gpu_options
    except (EngineUnavailable, ImportError) as err:
        log.warning("%s: using %s, because %s is unavailable: %s", label, cpu_name, gpu_name, err)
        kept, dropped = split_options(options, cpu_options)
        engine = cpu(**kept)
        chosen, known = cpu_name, cpu_options
    if dropped:
        log.warning(
            "%s: %s has no option %s, so %s dropped (its options: %s)",
            label,
            chosen,
            ", ".join(map(repr, dropped)),
            "it is" if len(dropped) == 1 else "they are",
            ", ".join(known) or "none",
        )
    return engine


def engine_class(name: str) -> type:
    """The class of engine `name` ('cpu' or 'cuda'); importing it needs no GPU (pycuda is imported
    when an engine is constructed)."""
    module, cls = _ENGINE_CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def engine_options(name: str) -> list[str]:
    """The option names `name` ('cpu', 'cuda', or 'auto': those of either) accepts, read from
    the constructors without creating an engine (no GPU needed)."""
    names = ["cpu", "cuda"] if name == "auto" else [name]
    found: list[str] = []
    for engine in names:
        found += [p for p in constructor_options(engine_class(engine)) if p not in found]
    return found


def check_engine_options(name: str, options: dict) -> None:
    """Raise EngineOptionError naming every option `name` does not have (before any data is loaded)."""
    if name not in ENGINES:
        raise EngineOptionError(f"unknown engine {name!r}: choose cpu, cuda or auto")
    known = engine_options(name)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise EngineOptionError(
            f"engine {name} has no option {', '.join(map(repr, unknown))} (its options: {', '.join(known)})"
        )


def get_engine(name: str, **options) -> Engine:
    """Return an engine by name: 'cpu', 'cuda', or 'auto' (cuda if a GPU is usable, else cpu,
    said in the log; each gets the options it has, the others named in a warning)."""
    if name == "cpu":
        return engine_class("cpu")(**options)
    if name == "cuda":
        return engine_class("cuda")(**options)  # raises EngineUnavailable with the reason
    if name == "auto":
        cpu = engine_class("cpu")

        def cuda(**kept) -> Engine:
            return engine_class("cuda")(**kept)

        return auto_engine(cuda, _cuda_options(), cpu, constructor_options(cpu), options)
    raise ValueError(f"unknown engine {name!r}: choose cpu, cuda or auto")


def _cuda_options() -> list[str]:
    """The CUDA engine's options; if its module cannot even be imported, none (the engine then
    fails to start in auto_engine with that ImportError, and the CPU engine is used)."""
    try:
        return constructor_options(engine_class("cuda"))
    except ImportError:
        return []
