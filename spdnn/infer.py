"""One network's inference step: load from the cache, run an engine, validate, write results.

This is what the `infer` rule and `spdnn infer` call. Every run is validated against the
truth; a mismatch raises ValidationError and no result file is written.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import challenge
from .config import ConfigError
from .engines import get_engine
from .engines.base import check_engine_options
from .io import cache
from .io.atomic import atomic_path, write_text
from .io.errors import DataError
from .io.tsv import read_categories
from .provenance import provenance
from .validate import check_categories, truth_for_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` equal slices of the input rows (multi-GPU and multi-node runs)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """'i/k' with 0 <= i < k."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"shard {text!r} is not of the form i/k") from None
        if not 0 <= index < count:
            raise ConfigError(f"shard {text!r}: need 0 <= i < k")
        return cls(index, count)

    def rows(self, n_inputs: int) -> tuple[int, int]:
        """[first, end) of this slice of n_inputs rows; an empty slice is an error, never a silent no-op."""
        lo, hi = (n_inputs * self.index) // self.count, (n_inputs * (self.index + 1)) // self.count
        if hi <= lo:
            raise ConfigError(f"shard {self.index}/{self.count} of {n_inputs} inputs is empty: "
                              f"use at most {n_inputs} shards")
        return lo, hi


def read_truth(truth_path: str | Path, n_inputs: int) -> np.ndarray:
    """The truth file's 0-based rows among the first n_inputs inputs."""
    return truth_for_inputs(read_categories(lambda: open(truth_path, "rb"), str(truth_path)), n_inputs)


def write_categories(path: str | Path, rows: np.ndarray) -> None:
    """Write 0-based rows in the official truth format: one 1-based index per line."""
    write_text(path, "".join(f"{r + 1}\n" for r in np.sort(rows)))


def run_network(weights_path: str | Path, inputs_path: str | Path, truth_path: str | Path, *,
                layers: int, n_inputs: int, engine: str = "auto", repeats: int = 1,
                shard: Shard = Shard(), output: str | Path, categories_path: str | Path | None = None,
                engine_options: dict | None = None, config: dict | None = None, gpus: int = 1,
                ready=None, verify: bool = True) -> dict:
    """Run, validate and record one network (or one shard of its inputs). Returns the result dict.

    With gpus > 1 the shard is split again over that many GPUs, one process each
    (spdnn.partition); `ready`, if given, is called once the engine is prepared, just before
    the timed runs (the GPU processes use it to start timing together). With `verify`, the
    cache files' checksums are checked first.
    """
    check_engine_options(engine, engine_options or {})  # before anything is loaded
    if gpus > 1 and engine == "auto" and importlib.util.find_spec("pycuda") is None:
        log.warning("engine auto: pycuda is not installed, so one CPU process runs instead of %d GPU processes", gpus)
        engine, gpus = "cpu", 1
    if gpus > 1:
        from .partition import run_on_gpus

        return run_on_gpus(weights_path, inputs_path, truth_path, layers=layers, n_inputs=n_inputs, engine=engine,
                           repeats=repeats, shard=shard, output=output, categories_path=categories_path,
                           engine_options=engine_options, config=config, gpus=gpus)
    start = time.perf_counter()
    if verify:  # a damaged cache is named and never used (its checksum file goes: the next run rebuilds it)
        cache.verify_cache(weights_path)
        cache.verify_cache(inputs_path)
    weights = cache.load_weights(weights_path, layers)
    inputs = cache.load_inputs(inputs_path, n_inputs)
    if inputs.shape[1] != weights.neurons:
        raise DataError(str(inputs_path), None,
                        f"inputs have {inputs.shape[1]} columns, the network has {weights.neurons} neurons")
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
    for _ in range(max(1, repeats)):
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
    record = {
        "network": {"neurons": weights.neurons, "layers": layers, "bias": weights.bias,
                    "source": weights.metadata.get("source", "")},
        "inputs": hi - lo,
        "shard": {"index": shard.index, "count": shard.count, "first_row": lo, "end_row": hi},
        "edges": edges,
        "engine_requested": engine,
        "engine": runs[0].engine,
        "device": runs[0].device,
        "repeats": len(runs),
        "inference_seconds": median,
        "inference_seconds_all": seconds,
        "load_seconds": load_seconds,
        "prepare_seconds": prepare_seconds,
        "end_to_end_seconds": load_seconds + prepare_seconds + median,
        "edges_per_second": edges / median if median > 0 else float("inf"),
        "active_rows": runs[0].active_rows,
        "categories": int(len(runs[0].categories)),
        "validation": "passed",
        "gpus": 0 if runs[0].engine == "cpu" else 1,
        "engine_details": runs[0].details,
        "provenance": provenance(),
        "config": config or {},
    }
    if categories_path is not None:
        write_categories(categories_path, runs[0].categories + lo)
    write_record(output, record)
    log.info("%s: %.3g edges/s, %d categories, validated", label, record["edges_per_second"], record["categories"])
    return record


def combine_records(records: list[dict], categories: list[np.ndarray], truth: np.ndarray, lo: int, hi: int,
                    label: str) -> tuple[dict, np.ndarray]:
    """Combine results of slices that tile input rows [lo, hi): union of categories (validated
    against the truth of those rows) and summed work. The slices ran side by side (GPUs of a
    node, or nodes), so the inference time of the whole is the slowest slice's.
    """
    spans = sorted((r["shard"]["first_row"], r["shard"]["end_row"]) for r in records)
    if not spans or spans[0][0] != lo or spans[-1][1] != hi or any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"slices {spans} do not tile input rows {lo}..{hi}")
    rows = np.sort(np.concatenate(categories)) if categories else np.empty(0, np.int64)
    check_categories(rows, truth[(truth >= lo) & (truth < hi)], label)
    seconds = max(r["inference_seconds"] for r in records)
    edges = sum(r["edges"] for r in records)
    merged = dict(records[0])
    merged.update({
        "inputs": hi - lo,
        "edges": edges,
        "device": ", ".join(sorted({r["device"] for r in records})),
        "inference_seconds": seconds,
        "inference_seconds_all": [r["inference_seconds"] for r in records],
        "load_seconds": max(r["load_seconds"] for r in records),
        "prepare_seconds": max(r["prepare_seconds"] for r in records),
        "end_to_end_seconds": max(r["end_to_end_seconds"] for r in records),
        "edges_per_second": edges / seconds if seconds > 0 else float("inf"),
        "active_rows": [int(sum(v)) for v in zip(*(r["active_rows"] for r in records))],
        "categories": int(len(rows)),
        "validation": "passed",
        "parts": [{**{k: r[k] for k in ("shard", "device", "inference_seconds", "edges_per_second")},
                   "host": r["provenance"].get("host"), "slurm_job_id": r["provenance"].get("slurm_job_id")}
                  for r in records],
    })
    return merged, rows


def write_record(path: str | Path, record: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")


def merge_shards(result_paths: list[str | Path], categories_paths: list[str | Path], truth_path: str | Path, *,
                 n_inputs: int, output: str | Path, categories_path: str | Path) -> dict:
    """Merge the shard results of one network (jobs that may have run on different nodes)."""
    records = [json.loads(Path(p).read_text()) for p in result_paths]
    rows = [read_categories(lambda p=p: open(p, "rb"), str(p)) for p in categories_paths]
    truth = read_truth(truth_path, n_inputs)
    net = records[0]["network"]
    merged, categories = combine_records(records, rows, truth, 0, n_inputs,
                                         f"neuron{net['neurons']}-l{net['layers']} (merged shards)")
    merged["shard"] = {"index": 0, "count": len(records), "first_row": 0, "end_row": n_inputs}
    merged["shards"] = len(records)
    merged["gpus"] = sum(r.get("gpus", 0) for r in records)
    write_categories(categories_path, categories)
    write_record(output, merged)
    return merged
