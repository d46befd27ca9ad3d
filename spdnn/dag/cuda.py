"""GPU engines for DAG networks: pycuda kernels per dependency group (kernels/dag_levels.cu).

pycuda is imported only when an engine is constructed; without it or without a usable GPU
the constructor raises EngineUnavailable (never a silent fallback).

kernel="thread": the paper's design, one thread per neuron (and input vector), one launch
  per group.
kernel="warp": TPN = LB x LE lanes per neuron and tile of input vectors (see the .cu file).
  The plan, per batch width B (`warp_plan`):
    VEC = 4 (float4 per lane) when B >= 64, else 1; LB = lanes along the batch, the
    smallest power of two with LB * VEC >= B, at most 32; LE = lanes over the edges,
    the power of two nearest half the group's mean in-degree, at most 32 / LB.
    Consecutive groups small enough for one block per tile (at most 1024 / TPN nodes)
    run in one launch with a block barrier between them, so deep, narrow networks do not
    pay a launch per group.
Values are node-major (a row holds the batch, padded to `ld`), so the lanes of a neuron read
one contiguous piece of each source row. Rows are value slots (liveness.py): a node's row is
reused once no later node reads it (`free_values=False`: one row per node). Batches wider than GPU memory
allows are run in chunks of columns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines.device import DeviceBuffers, compile_module, open_device
from .engine import DagEngine, DagResult, dense_inputs
from .liveness import plan_values
from .network import DagNetwork

KERNEL_FILE = Path(__file__).parent / "kernels" / "dag_levels.cu"
BLOCK = 256  # threads per block of a one-group launch
FUSED_BLOCK = 1024  # threads per block of a multi-group segment


def _pow2_ceil(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, x))))


@dataclass
class Segment:
    l0: int  # first group (level)
    l1: int  # one past the last group
    log_le: int
    grid_x: int
    block: int


@dataclass
class WarpPlan:
    vec: int
    log_lb: int
    tile: int  # input vectors per tile: LB * VEC
    segments: list[Segment]


def warp_plan(level_ptr: np.ndarray, indptr: np.ndarray, batch: int) -> WarpPlan:
    """Launch plan of the warp kernel for a batch of `batch` input vectors (see module docstring)."""
    vec = 4 if batch >= 64 else 1
    lb = min(32, _pow2_ceil(batch / vec))
    log_lb = lb.bit_length() - 1
    segments: list[Segment] = []
    run: list[tuple[int, int]] = []  # pending small groups: (level, log_le)

    def flush() -> None:
        if run:
            log_le = max(le for _, le in run)
            segments.append(Segment(run[0][0], run[-1][0] + 1, log_le, 1, FUSED_BLOCK))
            run.clear()

    for g in range(1, level_ptr.size - 1):
        lo, hi = int(level_ptr[g]), int(level_ptr[g + 1])
        nodes = hi - lo
        mean = (int(indptr[hi]) - int(indptr[lo])) / max(1, nodes)
        le = min(32 // lb, _pow2_ceil(mean / 2))
        log_le = le.bit_length() - 1
        tpn = lb * le
        if nodes <= FUSED_BLOCK // tpn:
            run.append((g, log_le))
            continue
        flush()
        per_block = (BLOCK // 32) * (32 // tpn)
        segments.append(Segment(g, g + 1, log_le, min(1 << 20, math.ceil(nodes / per_block)), BLOCK))
    flush()
    return WarpPlan(vec, log_lb, lb * vec, segments)


class DagCudaEngine(DagEngine):
    """pycuda engine for levelised DAG networks; see the module docstring."""

    def __init__(
        self,
        kernel: str = "warp",
        device: int = 0,
        memory_fraction: float = 0.8,
        max_columns: int | None = None,
        free_values: bool = True,
    ):
        if kernel not in ("thread", "warp"):
            raise ValueError(f"kernel must be thread or warp, not {kernel!r}")
        self._device = open_device(device, needed_by="the DAG GPU engines")
        self.cuda, self.dev, self.arch = self._device.cuda, self._device.dev, self._device.arch
        self.kernel = kernel
        self.name = f"cuda-{kernel}"
        self.memory_fraction = memory_fraction
        self.max_columns = max_columns
        self.free_values = free_values
        self._fns = self._compile()
        self._buffers = DeviceBuffers(self.cuda)

    def __del__(self):
        if hasattr(self, "_device"):
            self._device.release()

    def device(self) -> str:
        return self.dev.name()

    def _compile(self) -> dict:
        mod = compile_module(KERNEL_FILE, self.arch, ["-O3"])
        fns = {name: mod.get_function(name) for name in ("dag_thread", "dag_warp1", "dag_warp4", "dag_gather")}
        fns["dag_thread"].prepare("PiiiPPPPPP")
        fns["dag_warp1"].prepare("PiPiiiiPPPPPP")
        fns["dag_warp4"].prepare("PiPiiiiPPPPPP")
        fns["dag_gather"].prepare("PiPiP")
        self._module = mod
        return fns

    def prepare(self, net: DagNetwork) -> None:
        super().prepare(net)
        if net.n_edges >= 2**31 or net.n_nodes >= 2**31:
            raise ValueError("the GPU engines take fewer than 2^31 nodes and edges")
        to = self.cuda.to_device
        t0 = time.perf_counter()
        self.plan = plan = plan_values(net, self.free_values)  # value slots, reused after the last reader
        self.d_indptr = to(net.indptr.astype(np.int32))
        self.d_src = to(plan.src_slot if net.n_edges else np.zeros(1, np.int32))
        self.d_dst = to(plan.slot)
        self.d_w = to(np.ascontiguousarray(net.weights, dtype=np.float32) if net.n_edges else np.zeros(1, np.float32))
        self.d_bias = to(np.ascontiguousarray(net.bias, dtype=np.float32))
        self.d_act = to(np.ascontiguousarray(net.activation, dtype=np.int8))
        self.d_level_ptr = to(net.level_ptr.astype(np.int32))
        self.out_rows = plan.slot[net.output_rows].astype(np.int32)
        self.d_out_rows = to(self.out_rows if self.out_rows.size else np.zeros(1, np.int32))
        self._plans: dict[int, WarpPlan] = {}
        self.prepare_seconds = time.perf_counter() - t0

    def release(self) -> None:
        """Free the value buffers kept between calls."""
        self._buffers.free()

    def _columns_per_chunk(self, batch: int) -> int:
        net = self.net
        if self.max_columns:
            cols = int(self.max_columns)
        else:
            free, _ = self.cuda.mem_get_info()
            held = self._buffers.held_bytes()
            per_col = (self.plan.n_slots + max(1, net.n_outputs)) * 4
            cols = int(self.memory_fraction * (free + held) / per_col)
        cols = min(cols, 65535 if self.kernel == "thread" else 1 << 30)
        if cols >= batch:
            return batch
        cols = cols // 128 * 128
        if cols < 1:
            raise MemoryError(
                f"the network's {self.plan.n_slots} value rows do not fit on the GPU for 128 input vectors"
            )
        return cols

    def _ld(self, cols: int) -> tuple[int, WarpPlan | None]:
        if self.kernel == "thread":
            return (cols + 3) // 4 * 4, None
        plan = self._plans.get(cols)
        if plan is None:
            plan = self._plans[cols] = warp_plan(self.net.level_ptr, self.net.indptr, cols)
        return -(-cols // plan.tile) * plan.tile, plan

    def _launch(self, values, ld: int, cols: int, plan: WarpPlan | None, stream) -> int:
        net = self.net
        launches = 0
        if plan is None:
            fn = self._fns["dag_thread"]
            for g in range(1, net.n_levels):
                lo, hi = int(net.level_ptr[g]), int(net.level_ptr[g + 1])
                if hi == lo:
                    continue
                fn.prepared_async_call(
                    (math.ceil((hi - lo) / BLOCK), cols),
                    (BLOCK, 1, 1),
                    stream,
                    values,
                    np.int32(ld),
                    np.int32(lo),
                    np.int32(hi),
                    self.d_indptr,
                    self.d_src,
                    self.d_w,
                    self.d_bias,
                    self.d_act,
                    self.d_dst,
                )
                launches += 1
            return launches
        fn = self._fns["dag_warp4" if plan.vec == 4 else "dag_warp1"]
        tiles = ld // plan.tile
        for s in plan.segments:
            fn.prepared_async_call(
                (s.grid_x, tiles),
                (s.block, 1, 1),
                stream,
                values,
                np.int32(ld),
                self.d_level_ptr,
                np.int32(s.l0),
                np.int32(s.l1),
                np.int32(plan.log_lb),
                np.int32(s.log_le),
                self.d_indptr,
                self.d_src,
                self.d_w,
                self.d_bias,
                self.d_act,
                self.d_dst,
            )
            launches += 1
        return launches

    def infer(self, inputs) -> DagResult:
        cuda, net = self.cuda, self.net
        x = dense_inputs(inputs, net.n_inputs)
        wall = time.perf_counter()
        batch = x.shape[0]
        n_out = self.out_rows.size
        if batch == 0:
            return DagResult(np.zeros((0, n_out), np.float32), 0.0, 0.0, self.name, self.device())
        outputs = np.empty((batch, n_out), dtype=np.float32)
        chunk = self._columns_per_chunk(batch)
        stream = cuda.Stream()
        start, end = cuda.Event(), cuda.Event()
        seconds = 0.0
        launches = 0
        for c0 in range(0, batch, chunk):
            cols = min(chunk, batch - c0)
            ld, plan = self._ld(cols)
            values = self._buffers.get("values", self.plan.n_slots * ld * 4)
            out = self._buffers.get("out", max(1, n_out) * ld * 4)
            staged = np.zeros((net.n_inputs, ld), dtype=np.float32)
            staged[:, :cols] = x[c0 : c0 + cols].T
            cuda.memcpy_htod(values, staged)  # inputs are rows 0 .. n_inputs - 1
            start.record(stream)
            launches += self._launch(values, ld, cols, plan, stream)
            if n_out:
                total = n_out * ld
                self._fns["dag_gather"].prepared_async_call(
                    (min(65535, math.ceil(total / 256)), 1),
                    (256, 1, 1),
                    stream,
                    values,
                    np.int32(ld),
                    self.d_out_rows,
                    np.int32(n_out),
                    out,
                )
            end.record(stream)
            end.synchronize()
            seconds += end.time_since(start) / 1e3
            if n_out:
                host = np.empty((n_out, ld), dtype=np.float32)
                cuda.memcpy_dtoh(host, out)
                outputs[c0 : c0 + cols] = host[:, :cols].T
        details = {
            "chunk_columns": chunk,
            "launches": launches,
            "kernel": self.kernel,
            "value_slots": self.plan.n_slots,
            "value_bytes": self.plan.n_slots * ld * 4,
        }
        if plan is not None:
            details.update(vec=plan.vec, lanes_batch=1 << plan.log_lb, segments=len(plan.segments))
        return DagResult(outputs, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)
