"""A population of small networks in one kernel launch (pycuda; kernels/dag_levels.cu, dag_population).

Rows are member-major (population.blocked). The grid is (members, tiles of input vectors);
block (m, t) runs member m alone on tile t, group after group with a block barrier between
them, so the whole population costs one launch whatever its members' depths. Lanes are laid
out as in cuda-warp (cuda.warp_plan): LB lanes along the batch (VEC = 4 from batch 64), LE
lanes over a node's edges, LE from the population's mean in-degree. Batches wider than GPU
memory allows run in chunks of columns, one launch per chunk.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..engines.device import DeviceBuffers, compile_module, open_device
from .cuda import KERNEL_FILE, _pow2_ceil
from .engine import DagEngine, DagResult, dense_inputs
from .population import Population, blocked


def population_plan(batch: int, mean_in_degree: float) -> tuple[int, int, int, int]:
    """(vec, log_lb, log_le, tile) for a batch width, as cuda.warp_plan chooses them for one group."""
    vec = 4 if batch >= 64 else 1
    lb = min(32, _pow2_ceil(batch / vec))
    le = min(32 // lb, _pow2_ceil(mean_in_degree / 2))
    return vec, lb.bit_length() - 1, le.bit_length() - 1, lb * vec


class PopulationCudaEngine(DagEngine):
    """One launch for a whole population; see the module docstring."""

    name = "cuda-population"

    def __init__(self, device: int = 0, block: int = 512, memory_fraction: float = 0.8):
        if block % 32 or not 32 <= block <= 1024:
            raise ValueError(f"block must be a multiple of 32 in 32 .. 1024, not {block}")
        self._device = open_device(device, needed_by="the DAG population engine")
        self.cuda, self.dev, self.arch = self._device.cuda, self._device.dev, self._device.arch
        self.block = block
        self.memory_fraction = memory_fraction
        mod = compile_module(KERNEL_FILE, self.arch, ["-O3"])
        self._module = mod
        self._fns = {n: mod.get_function(n) for n in ("dag_population1", "dag_population4", "dag_gather")}
        self._fns["dag_population1"].prepare("PiPPiiPPPPPP")
        self._fns["dag_population4"].prepare("PiPPiiPPPPPP")
        self._fns["dag_gather"].prepare("PiPiP")
        self._buffers = DeviceBuffers(self.cuda)

    def __del__(self):
        if hasattr(self, "_device"):
            self._device.release()

    def device(self) -> str:
        return self.dev.name()

    def prepare(self, pop: Population) -> None:  # type: ignore[override]
        self.pop = pop
        b = self.layout = blocked(pop)
        if b.sources.size >= 2**31 or b.n_rows >= 2**31:
            raise ValueError("the GPU engines take fewer than 2^31 nodes and edges")
        to = self.cuda.to_device
        self.d_indptr = to(b.indptr.astype(np.int32))
        self.d_src = to(b.sources if b.sources.size else np.zeros(1, np.int32))
        self.d_w = to(b.weights if b.weights.size else np.zeros(1, np.float32))
        self.d_bias = to(b.bias.astype(np.float32))
        self.d_act = to(b.activation.astype(np.int8))
        self.d_level_ptr = to(b.level_ptr.astype(np.int32))
        self.d_member_levels = to(b.member_levels.astype(np.int32))
        self.d_dst = to(np.arange(b.n_rows, dtype=np.int32))  # one row per node: members are small
        self.out_rows = b.output_rows.astype(np.int32)
        self.d_out_rows = to(self.out_rows if self.out_rows.size else np.zeros(1, np.int32))
        computed = b.n_rows - b.n_inputs
        self.mean_in_degree = b.sources.size / max(1, computed)

    def release(self) -> None:
        self._buffers.free()

    def _chunk(self, batch: int) -> int:
        free, _ = self.cuda.mem_get_info()
        per_col = (self.layout.n_rows + max(1, self.out_rows.size)) * 4
        cols = int(self.memory_fraction * (free + self._buffers.held_bytes()) / per_col)
        if cols >= batch:
            return batch
        if cols < 128:
            raise MemoryError(f"the population's {self.layout.n_rows} rows do not fit on the GPU for 128 vectors")
        return cols // 128 * 128

    def infer(self, inputs) -> DagResult:
        cuda, b = self.cuda, self.layout
        x = dense_inputs(inputs, b.n_inputs)
        wall = time.perf_counter()
        batch, n_out = x.shape[0], self.out_rows.size
        outputs = np.empty((batch, n_out), dtype=np.float32)
        if batch == 0:
            return DagResult(outputs, 0.0, 0.0, self.name, self.device())
        chunk = self._chunk(batch)
        stream = cuda.Stream()
        start, end = cuda.Event(), cuda.Event()
        seconds, launches = 0.0, 0
        members = len(self.pop.members)
        for c0 in range(0, batch, chunk):
            cols = min(chunk, batch - c0)
            vec, log_lb, log_le, tile = population_plan(cols, self.mean_in_degree)
            ld = -(-cols // tile) * tile
            values = self._buffers.get("values", b.n_rows * ld * 4)
            out = self._buffers.get("out", max(1, n_out) * ld * 4)
            staged = np.zeros((b.n_inputs, ld), dtype=np.float32)
            staged[:, :cols] = x[c0 : c0 + cols].T
            cuda.memcpy_htod(values, staged)  # the shared inputs are rows 0 .. n_inputs - 1
            start.record(stream)
            self._fns["dag_population4" if vec == 4 else "dag_population1"].prepared_async_call(
                (members, ld // tile),
                (self.block, 1, 1),
                stream,
                values,
                np.int32(ld),
                self.d_level_ptr,
                self.d_member_levels,
                np.int32(log_lb),
                np.int32(log_le),
                self.d_indptr,
                self.d_src,
                self.d_w,
                self.d_bias,
                self.d_act,
                self.d_dst,
            )
            launches += 1
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
            "members": members,
            "launches": launches,
            "chunk_columns": chunk,
            "block": self.block,
            "vec": vec,
            "lanes_batch": 1 << log_lb,
            "lanes_edges": 1 << log_le,
        }
        return DagResult(outputs, seconds, time.perf_counter() - wall, self.name, self.device(), details=details)
