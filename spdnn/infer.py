"""One network's inference step: load from the cache, run an engine, validate, write results.

This is what the `infer` rule and `spdnn infer` call. Every run is validated against the
truth; a mismatch raises ValidationError and no result file is written.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import challenge
from .engines.registry import check_engine_options, get_engine
from .io import cache
from .io.errors import DataError
from .io.tsv import read_categories
from .provenance import provenance
from .result_record import NetworkInfo, ResultRecord, ShardSpan, read_record, write_record
from .shards import Shard, combine_records, read_truth, write_categories
from .validate import check_categories, truth_for_inputs

# Shard: its home is spdnn.shards
__all__ = ["NetworkFiles", "RunOptions", "RunOutputs", "Shard", "merge_shards", "run_network"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkFiles:
    """What one run reads: the network's weights and inputs caches and its truth file."""

    weights: str | Path
    inputs: str | Path
    truth: str | Path


@dataclass(frozen=True)
class RunOptions:
    """How one network is run: its depth, the first `n_inputs` inputs (of which the `shard`), the
    engine with its options, the timed repeats (each validated) and the GPUs the shard is split over."""

    layers: int
    n_inputs: int
    engine: str = "auto"
    engine_options: dict | None = None
    repeats: int = 1
    shard: Shard = Shard()
    gpus: int = 1


@dataclass(frozen=True)
class RunOutputs:
    """What one run writes: the result record, the categories (optional), and the run's config,
    which the record holds (the workflow's, so a table knows what produced each row)."""

    result: str | Path
    categories: str | Path | None = None
    config: dict | None = None


def run_network(
    files: NetworkFiles,
    options: RunOptions,
    outputs: RunOutputs,
    *,
    ready: Callable[[], object] | None = None,
    verify: bool = True,
) -> dict:
    """Run, validate and record one network (or one shard of its inputs). Returns the result
    record as the JSON object written to `outputs.result` (spdnn.result_record.ResultRecord.to_json).

    With options.gpus > 1 the shard is split again over that many GPUs, one process each
    (spdnn.partition); `ready`, if given, is called once the engine is prepared, just before
    the timed runs (the GPU processes use it to start timing together). With `verify`, the
    cache files' checksums are checked first.
    """
    weights_path, inputs_path, truth_path = files.weights, files.inputs, files.truth
    layers, n_inputs, engine, shard = options.layers, options.n_inputs, options.engine, options.shard
    engine_options, categories_path = options.engine_options, outputs.categories
    check_engine_options(engine, engine_options or {})  # before anything is loaded
    gpus = options.gpus
    if gpus > 1 and engine == "auto" and importlib.util.find_spec("pycuda") is None:
        log.warning("engine auto: pycuda is not installed, so one CPU process runs instead of %d GPU processes", gpus)
        engine, gpus = "cpu", 1
    if gpus > 1:
        from .partition import run_on_gpus

        return run_on_gpus(
            _run_gpu_slice,
            weights_path,
            inputs_path,
            truth_path,
            layers=layers,
            n_inputs=n_inputs,
            engine=engine,
            repeats=options.repeats,
            shard=shard,
            output=outputs.result,
            categories_path=categories_path,
            engine_options=engine_options,
            config=outputs.config,
            gpus=gpus,
        ).to_json()
    start = time.perf_counter()
    if verify:  # a damaged cache is named and never used (its checksum file goes: the next run rebuilds it)
        cache.verify_cache(weights_path)
        cache.verify_cache(inputs_path)
    weights = cache.load_weights(weights_path, layers)
    inputs = cache.load_inputs(inputs_path, n_inputs)
    if inputs.shape[1] != weights.neurons:
        raise DataError(
            str(inputs_path), None, f"inputs have {inputs.shape[1]} columns, the network has {weights.neurons} neurons"
        )
    total_inputs = int(cache.read_metadata(inputs_path)["rows"])
    lo, hi = shard.rows(n_inputs)
    inputs = inputs[lo:hi]
    truth = read_categories(lambda: open(truth_path, "rb"), str(truth_path), total_inputs)
    truth = truth_for_inputs(truth, hi)
    truth = truth[truth >= lo] - lo
    load_seconds = time.perf_counter() - start

    eng = get_engine(engine, **(engine_options or {}))
    t0 = time.perf_counter()
    eng.prepare(weights, layers)
    prepare_seconds = time.perf_counter() - t0
    if ready is not None:
        ready()
    runs = []
    for _ in range(max(1, options.repeats)):
        result = eng.infer(inputs)
        label = f"neuron{weights.neurons}-l{layers} on {eng.name} (inputs {lo + 1}..{hi})"
        try:
            check_categories(result.categories, truth, label)
        except Exception:
            if categories_path is not None:
                write_categories(f"{categories_path}.mismatch", result.categories + lo)
            raise
        runs.append(result)
    seconds = [r.seconds for r in runs]
    median = statistics.median(seconds)
    edges = challenge.edges(hi - lo, weights.neurons, layers)
    record = ResultRecord(
        network=NetworkInfo(weights.neurons, layers, weights.bias, weights.metadata.get("source", "")),
        inputs=hi - lo,
        shard=ShardSpan(shard.index, shard.count, lo, hi),
        edges=edges,
        engine_requested=engine,
        engine=runs[0].engine,
        device=runs[0].device,
        repeats=len(runs),
        inference_seconds=median,
        inference_seconds_all=seconds,
        load_seconds=load_seconds,
        prepare_seconds=prepare_seconds,
        end_to_end_seconds=load_seconds + prepare_seconds + median,
        edges_per_second=edges / median if median > 0 else float("inf"),
        active_rows=runs[0].active_rows,
        categories=int(len(runs[0].categories)),
        validation="passed",
        gpus=0 if runs[0].engine == "cpu" else 1,
        engine_details=runs[0].details,
        provenance=provenance(),
        config=outputs.config or {},
    )
    if categories_path is not None:
        write_categories(categories_path, runs[0].categories + lo)
    write_record(outputs.result, record)
    log.info("%s: %.3g edges/s, %d categories, validated", label, record.edges_per_second, record.categories)
    return record.to_json()


def _run_gpu_slice(
    *,
    weights_path: str | Path,
    inputs_path: str | Path,
    truth_path: str | Path,
    output: str | Path,
    categories_path: str | Path | None,
    config: dict | None,
    ready: Callable[[], object] | None = None,
    verify: bool = True,
    **options,
) -> dict:
    """run_network for one GPU process of spdnn.partition, which passes the step's arguments
    flat (module level, so the spawned process can import it)."""
    return run_network(
        NetworkFiles(weights_path, inputs_path, truth_path),
        RunOptions(**options),
        RunOutputs(output, categories_path, config),
        ready=ready,
        verify=verify,
    )


def merge_shards(
    result_paths: list[str | Path],
    categories_paths: list[str | Path],
    truth_path: str | Path,
    *,
    n_inputs: int,
    output: str | Path,
    categories_path: str | Path,
) -> dict:
    """Merge the shard results of one network (jobs that may have run on different nodes); returns
    the merged record's JSON object, as written to `output`."""
    records = [read_record(p) for p in result_paths]
    rows = [
        read_categories(lambda p=p: open(p, "rb"), str(p))  # type: ignore[misc]
        for p in categories_paths
    ]
    truth = read_truth(truth_path, n_inputs)
    merged, categories = combine_records(records, rows, truth, 0, n_inputs, f"{records[0].label()} (merged shards)")
    merged.shard = ShardSpan(0, len(records), 0, n_inputs)
    merged.shards = len(records)
    merged.gpus = sum(r.gpus for r in records)
    write_categories(categories_path, categories)
    write_record(output, merged)
    return merged.to_json()
