"""Slices of a network's input rows and their recombination: the Shard, the truth and the
category files of a slice, and the combination of slices' results into one validated record.

Shared by the inference step (spdnn.infer: one slice; merge_shards: slices run on other nodes)
and the multi-GPU split (spdnn.partition: slices run side by side), which import this module
and never each other the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .io.atomic import write_text
from .io.tsv import read_categories
from .result_record import Part, ResultRecord, ShardSpan
from .validate import check_categories, truth_for_inputs

__all__ = ["Shard", "combine_records", "read_truth", "write_categories"]


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` equal slices of the input rows (multi-GPU and multi-node runs)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
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
            raise ConfigError(
                f"shard {self.index}/{self.count} of {n_inputs} inputs is empty: use at most {n_inputs} shards"
            )
        return lo, hi

    def span(self, n_inputs: int) -> ShardSpan:
        """The slice as the result record names it."""
        lo, hi = self.rows(n_inputs)
        return ShardSpan(self.index, self.count, lo, hi)


def read_truth(truth_path: str | Path, n_inputs: int) -> np.ndarray:
    """The truth file's 0-based rows among the first n_inputs inputs."""
    return truth_for_inputs(read_categories(lambda: open(truth_path, "rb"), str(truth_path)), n_inputs)


def write_categories(path: str | Path, rows: np.ndarray) -> None:
    """Write 0-based rows in the official truth format: one 1-based index per line."""
    write_text(path, "".join(f"{r + 1}\n" for r in np.sort(rows)))


def combine_records(
    records: list[ResultRecord], categories: list[np.ndarray], truth: np.ndarray, lo: int, hi: int, label: str
) -> tuple[ResultRecord, np.ndarray]:
    """Combine results of slices that tile input rows [lo, hi): union of categories (validated
    against the truth of those rows) and summed work. The slices ran side by side (GPUs of a
    node, or nodes), so the inference time of the whole is the slowest slice's.
    """
    spans = sorted((r.span.first_row, r.span.end_row) for r in records)
    if not spans or spans[0][0] != lo or spans[-1][1] != hi or any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"slices {spans} do not tile input rows {lo}..{hi}")
    rows = np.sort(np.concatenate(categories)) if categories else np.empty(0, np.int64)
    check_categories(rows, truth[(truth >= lo) & (truth < hi)], label)
    seconds = max(r.inference_seconds for r in records)
    edges = sum(r.edges for r in records)
    merged = replace(
        records[0],
        inputs=hi - lo,
        edges=edges,
        device=", ".join(sorted({r.device for r in records})),
        inference_seconds=seconds,
        inference_seconds_all=[r.inference_seconds for r in records],
        load_seconds=max(r.load_seconds for r in records),
        prepare_seconds=max(r.prepare_seconds for r in records),
        end_to_end_seconds=max(r.end_to_end_seconds for r in records),
        edges_per_second=edges / seconds if seconds > 0 else float("inf"),
        active_rows=[int(sum(v)) for v in zip(*(r.active_rows for r in records))],
        categories=int(len(rows)),
        validation="passed",
        parts=[
            Part(
                shard=r.span,
                device=r.device,
                inference_seconds=r.inference_seconds,
                edges_per_second=r.edges_per_second,
                host=r.provenance.get("host"),
                slurm_job_id=r.provenance.get("slurm_job_id"),
            )
            for r in records
        ],
        path=None,
    )
    return merged, rows
