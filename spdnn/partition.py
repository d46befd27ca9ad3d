"""One network shard spread over the GPUs of a node: one process per GPU, rows split statically.

Every GPU holds all the weights (docs/design.md); process i sees only GPU i (CUDA_VISIBLE_DEVICES
is set before it imports pycuda, so no CUDA context is shared), runs its slice of the rows,
and waits at a barrier after loading so that the timed inference of all GPUs overlaps. The
parent validates the union of the categories and writes one combined result.

Each GPU process runs the inference step it is given (spdnn.infer.run_network, which calls
this module): this module never imports the step, so the two form no import cycle.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .devices import gpu_ids
from .engines.base import EngineUnavailable
from .io.atomic import remove_stale, temporary_name
from .io.cache import verify_cache
from .io.tsv import read_categories
from .result_record import ResultRecord, ShardSpan, read_record, write_record
from .shards import Shard, combine_records, read_truth, write_categories


def _worker(run_one: Callable[..., dict], gpu: str, kwargs: dict, barrier, errors) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        run_one(**kwargs, ready=lambda: barrier.wait(timeout=3600))
    except BaseException as err:  # reported by the parent, which fails the job
        barrier.abort()
        errors.put(f"GPU {gpu}: {type(err).__name__}: {err}")
        raise SystemExit(1) from err


@contextlib.contextmanager
def _scratch_folder(output: str | Path) -> Iterator[Path]:
    """A folder beside `output` for the GPU processes' parts, removed afterwards (and, if a
    killed run left one, by the next run)."""
    parent, stem = Path(output).parent, f"{Path(output).name}.gpus"
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, stem)
    folder = parent / temporary_name(stem)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_on_gpus(
    run_one: Callable[..., dict],
    weights_path,
    inputs_path,
    truth_path,
    *,
    layers: int,
    n_inputs: int,
    engine: str,
    repeats: int,
    shard: Shard,
    output,
    categories_path,
    engine_options,
    config,
    gpus: int,
) -> ResultRecord:
    """Run `shard` of the inputs split over `gpus` GPU processes, each calling `run_one` (the
    inference step, spdnn.infer.run_network: a module-level function, so the spawned processes
    can import it) on its slice; validate and write the combined result."""
    ids = gpu_ids()
    if gpus > len(ids):
        raise EngineUnavailable(f"{gpus} GPUs requested, {len(ids)} visible ({', '.join(ids) or 'none'})")
    verify_cache(weights_path)  # once here, not in every GPU process
    verify_cache(inputs_path)
    ctx = mp.get_context("spawn")  # a fresh interpreter per GPU: no inherited CUDA state
    barrier, errors = ctx.Barrier(gpus), ctx.Queue()
    with _scratch_folder(output) as tmp:
        parts = []
        for g in range(gpus):
            sub = Shard(shard.index * gpus + g, shard.count * gpus)
            kwargs = dict(
                weights_path=weights_path,
                inputs_path=inputs_path,
                truth_path=truth_path,
                layers=layers,
                n_inputs=n_inputs,
                engine="cuda" if engine == "auto" else engine,
                repeats=repeats,
                shard=sub,
                output=Path(tmp) / f"gpu{g}.json",
                categories_path=Path(tmp) / f"gpu{g}.categories.tsv",
                engine_options=engine_options,
                config=config,
                verify=False,
            )
            proc = ctx.Process(
                target=_worker, args=(run_one, ids[g], kwargs, barrier, errors), name=f"spdnn-gpu{ids[g]}"
            )
            proc.start()
            parts.append(proc)
        for proc in parts:
            proc.join()
        if any(p.exitcode != 0 for p in parts):
            messages = []
            while not errors.empty():
                messages.append(errors.get())
            raise RuntimeError("GPU processes failed: " + "; ".join(messages or ["(no message)"]))
        records = [read_record(Path(tmp) / f"gpu{g}.json") for g in range(gpus)]
        rows = [
            read_categories(lambda g=g: open(Path(tmp) / f"gpu{g}.categories.tsv", "rb"), f"gpu{g}")  # type: ignore[misc]
            for g in range(gpus)
        ]
    lo, hi = shard.rows(n_inputs)
    truth = read_truth(truth_path, n_inputs)
    record, categories = combine_records(
        records, rows, truth, lo, hi, f"neuron{records[0].network.neurons}-l{layers} over {gpus} GPUs"
    )
    record.shard = ShardSpan(shard.index, shard.count, lo, hi)
    record.gpus = gpus
    if categories_path is not None:
        write_categories(categories_path, np.asarray(categories))
    write_record(output, record)
    return record
