"""The CPU reference engine: the challenge's exact semantics with scipy.sparse.

Y_{k+1} = min(max(Y_k W_k + b on the nonzeros, 0), 32), with active-row compaction:
rows that become all zero are dropped from later layers and their indices kept.

Input rows are independent, so the reference can split them over worker processes. Not
threads: whether scipy's sparse product releases the GIL depends on its version (scipy 1.17:
two threads ran 0.81x the speed of one; scipy 1.18: threads beat processes at small sizes),
and processes scale with either (docs/synthetic.md). Each row goes through the same scipy
operations whichever rows share its part, so any split gives bit-identical values,
categories and counts.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import challenge
from ..devices import cpu_model, default_workers  # noqa: F401  (re-exported: their home is spdnn.devices)
from .base import Engine, InferenceResult


def layer_step(y: sp.csr_matrix, w: sp.csr_matrix, bias: float) -> sp.csr_matrix:
    """One layer on CSR features: multiply, bias on the structural nonzeros, ReLU, clip at 32."""
    z = (y @ w).tocsr()
    # Sorted columns make the next product add each output's terms in ascending input order:
    # a fixed, documented order (the GPU kernels use the same one and agree bit for bit).
    z.sort_indices()
    challenge.activate(z.data, bias)  # bias on the stored entries only, then ReLU and clip
    z.eliminate_zeros()
    return z


@dataclass
class ReferenceResult:
    """What the reference returns for a set of input rows.

    active_rows: rows still nonzero after each layer; alive: layer count -> sorted 0-based
    indices of the rows alive after that many layers (the truth of a network of that depth);
    values: the final nonzero feature rows (rows = alive after the last layer), if kept.
    """

    active_rows: list[int]
    alive: dict[int, np.ndarray]
    values: sp.csr_matrix | None


def saturated(y: sp.csr_matrix) -> np.ndarray:
    """Positions of the rows of y that are 32 at every neuron (dense and clipped)."""
    full = np.flatnonzero(np.diff(y.indptr) == y.shape[1])
    if full.size == 0:
        return full
    below = np.concatenate([[0], np.cumsum(y.data < np.float32(challenge.CLIP))])
    return full[below[y.indptr[full + 1]] == below[y.indptr[full]]]


def reference_rows(
    layers: Iterable[sp.csr_matrix],
    bias: float,
    inputs: sp.csr_matrix,
    rows: np.ndarray | None = None,
    counts: Iterable[int] = (),
    keep_values: bool = True,
    carry_saturated: bool = True,
) -> ReferenceResult:
    """Run `layers` on inputs[rows] (all rows by default) in this process, with compaction.

    Indices in the result are rows of `inputs`; `counts` are the layer counts whose alive
    rows are wanted (the last layer's are always kept).

    carry_saturated: rows that are 32 at every neuron are identical, so each layer runs for
    one such row only (the same layer_step: the same values as for any of them) and, while
    that row comes out all 32 again (on the challenge's networks at every layer: each
    column's 32 weights sum to 2), the saturated rows are carried without computing them.
    The survivors saturate by layer 20-30, so deep networks cost little more than shallow
    ones. Values, categories and counts are identical with it off (tested).
    """
    rows = np.arange(inputs.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    wanted = set(counts)
    y = sp.csr_matrix(inputs[rows] if len(rows) < inputs.shape[0] else inputs, dtype=np.float32, copy=True)
    n = y.shape[1]
    alive = rows.copy()
    carried = np.zeros(0, dtype=np.int64)  # input rows that are saturated, sorted
    full = sp.csr_matrix(np.full((1, n), challenge.CLIP, dtype=np.float32))
    bias = np.float32(bias)
    active: list[int] = []
    found: dict[int, np.ndarray] = {}

    def with_carried(y, alive, row):  # the carried rows back among y's, as copies of `row`
        merged = np.concatenate([alive, carried])
        order = np.argsort(merged, kind="stable")
        return sp.vstack([y, row[np.zeros(carried.size, dtype=np.int64)]], format="csr")[order], merged[order]

    for k, w in enumerate(layers, start=1):
        y = layer_step(y, w, bias)
        if carried.size:
            out = layer_step(full, w, bias)
            if saturated(out).size == 0:  # this layer does not keep them saturated: they rejoin
                if out.nnz:
                    y, alive = with_carried(y, alive, out)
                carried = carried[:0]
        keep = np.flatnonzero(np.diff(y.indptr))
        if carry_saturated:
            now = saturated(y)
            if now.size:
                carried = np.union1d(carried, alive[now])
                keep = np.setdiff1d(keep, now, assume_unique=True)
        if keep.size < y.shape[0]:
            y, alive = y[keep], alive[keep]
        active.append(int(keep.size + carried.size))
        if k in wanted:
            found[k] = np.union1d(alive, carried)
    if carried.size:
        if keep_values:
            y, alive = with_carried(y, alive, full)
        else:
            alive = np.union1d(alive, carried)
    found[len(active)] = alive
    return ReferenceResult(active, found, y if keep_values else None)


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` forked processes (they inherit the parent's memory, so large inputs
    and memory-mapped weights are not copied). The processes start at the first submit."""
    return _ForkPool(workers, mp_context=multiprocessing.get_context("fork"))


class _ForkPool(ProcessPoolExecutor):
    """Forks at the first submit (not at construction), with the fork-with-threads warning
    silenced: forking a process with threads (numpy's BLAS pool, pyarrow's, a CUDA context) is
    safe here, since the children run numpy/scipy on their own data and never wait on a
    parent's lock."""

    def submit(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
            return super().submit(*args, **kwargs)


# The work of one parallel call, set before the workers are forked: they inherit it (weights
# memory-mapped from the cache included) instead of receiving a copy through a pipe.
_JOB: dict = {}


def _run_part(part: int) -> ReferenceResult:
    job = _JOB
    rows = np.arange(part, job["inputs"].shape[0], job["parts"], dtype=np.int64)
    return reference_rows(
        job["layers"](), job["bias"], job["inputs"], rows, job["counts"], job["keep_values"], job["carry_saturated"]
    )


def _merge(parts: list[ReferenceResult], keep_values: bool) -> ReferenceResult:
    active = [int(v) for v in np.sum([p.active_rows for p in parts], axis=0)]
    alive = {k: np.sort(np.concatenate([p.alive[k] for p in parts])) for k in parts[0].alive}
    values = None
    if keep_values:
        last = np.concatenate([p.alive[len(active)] for p in parts])
        values = sp.vstack([p.values for p in parts], format="csr", dtype=np.float32)[np.argsort(last, kind="stable")]
    return ReferenceResult(active, alive, values)


class ParallelReference:
    """The reference over `workers` forked processes, each running every layer on the input
    rows i with i % workers == its index (interleaved, so the survivors, which cost the most,
    spread evenly even where the inputs are ordered).

    layers: a callable returning a fresh iterable of the layers (each worker walks them).
    Use as a context manager around `submit` ... `result`, so that the caller can do other
    work (write files) while the workers run.
    """

    def __init__(
        self,
        layers: Callable[[], Iterable[sp.csr_matrix]],
        bias: float,
        inputs: sp.csr_matrix,
        counts: Iterable[int] = (),
        workers: int | None = None,
        keep_values: bool = True,
        carry_saturated: bool = True,
    ):
        self.workers = max(1, min(workers or default_workers(), inputs.shape[0]))
        self.job = dict(
            layers=layers,
            bias=float(bias),
            inputs=inputs,
            counts=tuple(counts),
            keep_values=keep_values,
            carry_saturated=carry_saturated,
            parts=self.workers,
        )
        self.futures: list = []
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ParallelReference:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def submit(self) -> None:
        """Fork the workers and start them (returns at once)."""
        global _JOB
        if self.workers == 1 or not can_fork():
            return  # run in this process, in result()
        _JOB = self.job
        try:
            self.pool = fork_pool(self.workers)
            self.futures = [self.pool.submit(_run_part, i) for i in range(self.workers)]
        finally:
            _JOB = {}  # the children have their copy; the parent keeps no extra reference

    def result(self) -> ReferenceResult:
        """Wait for the workers and merge their rows (or run here if there is one worker)."""
        if not self.futures:
            job = self.job
            return reference_rows(
                job["layers"](),
                job["bias"],
                job["inputs"],
                None,
                job["counts"],
                job["keep_values"],
                job["carry_saturated"],
            )
        return _merge([f.result() for f in self.futures], self.job["keep_values"])


def reference(
    layers: Callable[[], Iterable[sp.csr_matrix]],
    bias: float,
    inputs: sp.csr_matrix,
    counts: Iterable[int] = (),
    workers: int | None = 1,
    keep_values: bool = True,
    carry_saturated: bool = True,
) -> ReferenceResult:
    """The reference on all inputs, split over `workers` processes (None: all cores)."""
    with ParallelReference(layers, bias, inputs, counts, workers, keep_values, carry_saturated) as run:
        run.submit()
        return run.result()


class CpuEngine(Engine):
    """scipy.sparse reference, vectorised over all inputs; the truth for synthetic networks.

    workers: processes to split the input rows over (1: this process, as before; None: all
    cores); the results are bit-identical whatever the number. threads: accepted for the
    engine options' interface and unused (scipy's product holds the GIL). carry_saturated:
    rows that are 32 everywhere are carried, not computed, while the layers keep them so
    (reference_rows; off: the plain definition, layer by layer, same results).
    """

    name = "cpu"

    def __init__(self, threads: int | None = None, workers: int | None = 1, carry_saturated: bool = True):
        self.threads = threads
        self.workers = workers
        self.carry_saturated = bool(carry_saturated)

    def device(self) -> str:
        return cpu_model()

    def infer(self, inputs: sp.csr_matrix) -> InferenceResult:
        weights, layers = self.weights, self.n_layers
        mats = [weights.layer(k) for k in range(layers)]  # zero-copy views, built outside the timer
        start = time.perf_counter()
        result = reference(
            lambda: mats, weights.bias, inputs, workers=self.workers, carry_saturated=self.carry_saturated
        )
        seconds = time.perf_counter() - start
        return InferenceResult(
            categories=result.alive[layers],
            active_rows=result.active_rows,
            seconds=seconds,
            engine=self.name,
            device=self.device(),
            values=result.values,
        )
