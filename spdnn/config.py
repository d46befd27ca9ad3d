"""Readable config errors: one line per problem, naming the key (Snakemake's own message is a schema dump)."""
from __future__ import annotations

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
