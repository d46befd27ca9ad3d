"""Compiled CPU engines (numba): `compiled` (one thread, node by node) and `threaded` (all cores).

These are the baselines a GPU result is measured against (the Python `sequential` engine
pays an interpreter step per node and is kept only as the paper's naive reference). Both
free value rows once no later node reads them (liveness.py; `free_values=False` keeps one
row per node) and accumulate in float32 in edge order.

`threaded` splits the batch into column ranges, one per thread, when the batch is at least
`COLUMNS_PER_THREAD` vectors per thread; otherwise it runs group by group and splits the
nodes of each group with enough work (`GROUP_WORK_TO_SHARE` edges x vectors). `threads` defaults to numba's
thread count (the machine's cores).
"""

from __future__ import annotations

import time

import numpy as np

from .cpu import _CpuBase
from .engine import DagResult, dense_inputs
from .liveness import ValuePlan
from .network import DagNetwork

COLUMNS_PER_THREAD = 16
GROUP_WORK_TO_SHARE = 1 << 15  # edges x batch below which a group is not split across threads


class _CompiledBase(_CpuBase):
    """The CPU engines' value plan and device name, with numba loops doing the work."""

    plan: ValuePlan

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)  # the value plan
        self.indptr = np.ascontiguousarray(net.indptr, dtype=np.int64)
        self.weights = np.ascontiguousarray(net.weights, dtype=np.float32)
        self.bias = np.ascontiguousarray(net.bias, dtype=np.float32)
        self.act = np.ascontiguousarray(net.activation, dtype=np.int8)
        self.level_ptr = np.ascontiguousarray(net.level_ptr, dtype=np.int64)
        self.out_slots = self.plan.slot[net.output_rows]

    def _run(self, values: np.ndarray) -> dict:
        raise NotImplementedError

    def infer(self, inputs) -> DagResult:
        net, plan = self.net, self.plan
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        values = np.empty((max(1, plan.n_slots), x.shape[0]), dtype=np.float32)
        values[: net.n_inputs] = x.T  # inputs hold slots 0 .. inputs - 1
        t0 = time.perf_counter()
        details = self._run(values) if x.shape[0] else {}
        out = np.ascontiguousarray(values[self.out_slots].T)
        seconds = time.perf_counter() - t0
        details.update(value_slots=plan.n_slots, value_bytes=plan.value_bytes(x.shape[0]), freed=plan.freed)
        return DagResult(out, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)


class CompiledEngine(_CompiledBase):
    """One thread, nodes in topological order (a compiled sequential baseline)."""

    name = "compiled"

    def _run(self, values: np.ndarray) -> dict:
        from .cpu_kernels import run_sequential

        run_sequential(
            values,
            self.net.n_inputs,
            self.indptr,
            self.plan.src_slot,
            self.weights,
            self.bias,
            self.act,
            self.plan.slot,
        )
        return {"threads": 1}


class ThreadedEngine(_CompiledBase):
    """All cores: column ranges per thread, or the nodes of each group split across threads."""

    name = "threaded"

    def __init__(self, free_values: bool = True, threads: int | None = None):
        super().__init__(free_values)
        self.threads = threads

    def _run(self, values: np.ndarray) -> dict:
        import numba

        from .cpu_kernels import run_columns, run_groups

        threads = self.threads or numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        numba.set_num_threads(threads)
        batch = values.shape[1]
        p = self.plan
        if batch >= COLUMNS_PER_THREAD * threads:
            # ranges of whole 64-byte lines, so no two threads write one cache line
            bounds = np.minimum(np.arange(threads + 1, dtype=np.int64) * (-(-batch // threads // 16) * 16), batch)
            bounds[-1] = batch
            run_columns(
                values, self.net.n_inputs, self.indptr, p.src_slot, self.weights, self.bias, self.act, p.slot, bounds
            )
            mode = "columns"
        else:
            edges = np.diff(self.indptr[self.level_ptr])
            shared = (edges * batch >= GROUP_WORK_TO_SHARE) & (np.diff(self.level_ptr) >= 2)
            run_groups(
                values,
                self.level_ptr,
                self.indptr,
                p.src_slot,
                self.weights,
                self.bias,
                self.act,
                p.slot,
                shared,
                4 * threads,
            )  # a few node ranges per thread, for balance
            mode = "groups"
        return {"threads": threads, "mode": mode}
