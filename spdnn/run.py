"""`spdnn run`: every step for one network in a work folder, without Snakemake.

Nothing in the work folder is reused unless it follows from what this run asks for: raw data
lives in a folder named after its origin (the synthetic seed and input count, or the source
URL), and a cache file is reused only while the source file it records (sha256) is the one
there now. A rerun with another seed, another source or a changed file rebuilds what changed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import challenge
from .io.errors import DataError


@dataclass(frozen=True)
class RunRequest:
    """What one `spdnn run` computes."""

    neurons: int
    layers: int
    truth_layers: int
    inputs: int
    source: str  # 'synthetic', or a base URL / folder in the official layout
    seed: int
    engine: str = "auto"
    repeats: int = 1


def origin_key(request: RunRequest) -> str:
    """The work folder's name for the data of `request`: equal keys mean equal raw data."""
    if request.source == "synthetic":
        deepest = max(request.layers, request.truth_layers)
        return f"synthetic-seed{request.seed}-inputs{request.inputs}-l{deepest}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.source).strip("-")[-40:] or "source"
    return f"{slug}-{hashlib.sha256(request.source.encode()).hexdigest()[:12]}"


def raw_files(request: RunRequest, work: Path, progress: bool) -> Path:
    """The folder holding the official layout for `request`: generated, downloaded, or the
    local source itself (read in place, so a changed file there is seen)."""
    n, key = request.neurons, origin_key(request)
    wanted = (challenge.weights_archive(n), challenge.inputs_file(n), challenge.truth_file(n, request.truth_layers))
    if request.source == "synthetic":
        from .generate import write_official_layout

        raw = work / "raw" / key
        if not all((raw / rel).exists() for rel in wanted):
            write_official_layout(
                raw, n, sorted({request.layers, request.truth_layers}), request.inputs, request.seed, progress=progress
            )
        return raw
    from .fetch import fetch, local_path, url_for

    local = local_path(request.source)
    if local is not None:
        for rel in wanted:
            if not (local / rel).is_file():
                raise DataError(str(local / rel), None, "not found")
        return local
    raw = work / "raw" / key
    for rel in wanted:
        if not (raw / rel).exists():  # a finished download is verified; fetch never leaves a partial one there
            fetch(url_for(request.source, rel), raw / rel, progress=progress)
    return raw


def current_cache(cache_file: Path, source_file: Path) -> bool:
    """Whether `cache_file` is intact and was made from `source_file` as it is now."""
    from .io.cache import cache_problem, read_metadata, sha256_file

    if not cache_file.exists() or cache_problem(cache_file, full=False) is not None:
        return False
    return read_metadata(cache_file).get("source_sha256") == sha256_file(source_file)


def run(request: RunRequest, workdir: str | os.PathLike, progress: bool = True) -> tuple[dict, Path]:
    """Generate or fetch, convert (when the cache is not current), infer and validate; returns
    the result record and the path it was written to."""
    from .infer import NetworkFiles, RunOptions, RunOutputs, run_network
    from .io.cache import convert_inputs, convert_weights
    from .io.names import inputs_cache, weights_cache

    work, n, key = Path(workdir), request.neurons, origin_key(request)
    raw = raw_files(request, work, progress)
    label = "synthetic" if request.source == "synthetic" else request.source
    cache_dir = work / "cache" / key
    weights = cache_dir / weights_cache(n, request.layers)
    inputs = cache_dir / inputs_cache(n)
    archive, images = raw / challenge.weights_archive(n), raw / challenge.inputs_file(n)
    if not current_cache(weights, archive):
        convert_weights(archive, weights, n, request.layers, source=label, progress=progress)
    if not current_cache(inputs, images):
        convert_inputs(images, inputs, n, source=label, progress=progress)
    out = work / "results" / key / f"neuron{n}-l{request.layers}.{request.engine}.json"
    record = run_network(
        NetworkFiles(weights, inputs, raw / challenge.truth_file(n, request.truth_layers)),
        RunOptions(layers=request.layers, n_inputs=request.inputs, engine=request.engine, repeats=request.repeats),
        RunOutputs(out),
    )
    return record, out
