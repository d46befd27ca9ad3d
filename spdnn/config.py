"""Readable config errors: one line per problem, naming the key (Snakemake's own message is a schema dump)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation in `config` as 'key.path: problem', deepest (most specific) first."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: -len(e.absolute_path)):
        for leaf in (error.context or [error]) if error.validator in ("oneOf", "anyOf") else [error]:
            key = ".".join(str(p) for p in leaf.absolute_path) or "(top level)"
            lines.append(f"config key {key}: {leaf.message}")
    return list(dict.fromkeys(lines))


_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+")


def numbers_from_strings(value):
    """Snakemake's `--config key=[{...}]` leaves numbers nested in lists and dicts as strings
    ('256'); turn such strings back into numbers so the schema sees what the user meant."""
    if isinstance(value, dict):
        return {k: numbers_from_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_from_strings(v) for v in value]
    if isinstance(value, str):
        if _INT.fullmatch(value):
            return int(value)
        if _FLOAT.fullmatch(value):
            return float(value)
    return value
