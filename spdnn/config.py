"""Readable config errors: one line per problem, naming the key (Snakemake's own message is a schema dump)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import yaml

from .errors import ConfigError  # noqa: F401  (its home is the leaf spdnn.errors, shared without a cycle)

# The synthetic data's seed wherever none is given: `spdnn run`, `spdnn generate` and the
# workflow (config/config.yaml, the schema's default) give the same N, L and inputs the same network.
DEFAULT_SEED = 1


# Keys that are paths: a name like "2024" stays a string, whatever YAML or --config made of it.
PATH_KEYS = ("datadir", "outdir")


def paths_as_strings(config: dict) -> dict:
    """`config` with the PATH_KEYS that YAML or `--config` turned into numbers back as strings."""
    fixed = dict(config)
    for key in PATH_KEYS:
        if isinstance(fixed.get(key), (int, float)) and not isinstance(fixed.get(key), bool):
            fixed[key] = str(fixed[key])
    return fixed


def gpu_status(conda: bool = False) -> tuple[bool, str]:
    """(usable, why) for the GPU engine on this machine, decided without a CUDA context (the
    workflow asks while it is parsed): a GPU visible (spdnn.devices: CUDA_VISIBLE_DEVICES, else
    nvidia-smi) and pycuda importable, or coming with the rules' conda env (`conda`). The engine
    checks again when it runs."""
    from .devices import visible_gpu_count

    gpus = visible_gpu_count()
    if gpus == 0:
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            return False, f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} shows no GPU"
        if shutil.which("nvidia-smi") is None:
            return False, "no NVIDIA driver: nvidia-smi is not on PATH"
        return False, "nvidia-smi lists no GPU"
    if conda:
        return True, f"{gpus} GPU(s) visible; pycuda comes with the rules' conda env"
    if importlib.util.find_spec("pycuda") is None:
        return False, f'{gpus} GPU(s) visible but pycuda is not installed (pip install -e ".[gpu]")'
    return True, f"{gpus} GPU(s) visible and pycuda installed"


def semantic_errors(config: dict) -> list[str]:
    """What the schema cannot say: engine options the engine lacks, more shards than inputs.
    The engines' code (numpy, scipy) is imported only when there are engine options to check."""
    problems = []
    if config.get("engine_options"):
        from .engines.registry import EngineOptionError, check_engine_options

        try:
            check_engine_options(config["engine"], config["engine_options"])
        except EngineOptionError as err:
            problems.append(f"config key engine_options: {err}")
    shards, inputs = config.get("shards", 1), config.get("inputs", 1)
    if isinstance(shards, int) and isinstance(inputs, int) and shards > inputs:
        problems.append(f"config key shards: {shards} shards for {inputs} inputs would leave shards empty")
    return problems


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation in `config` as 'key.path: problem', deepest (most specific) first."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: -len(e.absolute_path)):
        for leaf in (error.context or [error]) if error.validator in ("oneOf", "anyOf") else [error]:
            key = ".".join(str(p) for p in leaf.absolute_path) or "(top level)"
            why = (
                f" ({leaf.schema['description']})"
                if leaf.validator == "pattern" and "description" in leaf.schema
                else ""
            )
            lines.append(f"config key {key}: {leaf.message}{why}")
    return list(dict.fromkeys(lines))


_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+")


def numbers_from_strings(value, keep: tuple[str, ...] = PATH_KEYS):
    """Snakemake's `--config key=[{...}]` leaves numbers nested in lists and dicts as strings
    ('256'); turn such strings back into numbers so the schema sees what the user meant. The
    top-level keys in `keep` (paths) stay as they are."""
    if isinstance(value, dict):
        return {k: v if k in keep else numbers_from_strings(v, ()) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_from_strings(v, ()) for v in value]
    if isinstance(value, str):
        if _INT.fullmatch(value):
            return int(value)
        if _FLOAT.fullmatch(value):
            return float(value)
    return value
