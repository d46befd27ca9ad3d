"""The CUDA engine: fused sparse layers in CUDA C (kernels/spdnn_layer.cu), run through pycuda.

pycuda is imported only when a CudaEngine is constructed; without it, or without a usable
GPU, construction raises EngineUnavailable with the reason (never a silent fallback).

This module is the runner: the device, the compiled kernels, the plan's upload and the batch
loop. What it runs comes from two host-side modules (no pycuda): the layer plan
(layer_plan.py: transposed, de-duplicated and merged layers, the variant, fusion and carry
rules) and the check-point policy (checkpoints.py: when to look at the counts, peek or block,
compact, and the batch size). Design: docs/design.md; kernels: kernels/spdnn_layer.cu;
measurements: docs/benchmarks-gpu.md.

* One kernel launch per layer does the multiply, the bias on the nonzeros, the ReLU and the
  clip at 32, writes a per-row "any nonzero" flag, zeroes the next layer's flags and counts
  the previous layer's active rows (so active_rows costs no extra launch).
* Features are dense float rows of the active inputs, stored tile-interleaved (tiles of 32
  rows; neuron i of the 32 rows is one 128-byte line), so every gather and every store of a
  warp is one full line.
* Weights are stored transposed (for every output column its KW (input, value) pairs, i.e.
  CSC / transposed ELL) and de-duplicated: identical columns are computed once and written to
  every output neuron that has them.
* Variants, chosen by rule (`variant="auto"`):
    - "dedup": distinct columns of each layer, outputs written at full width N.
    - "merged": the layers are rewritten, once at prepare time, into an equivalent narrower
      network: neurons with identical columns carry identical values in every row, so only
      one copy of each is kept, and the next layer's entries that read a copy are re-pointed
      at the kept one (RadiX-Net layers: N -> N/16 neurons; every column keeps its 32
      original terms, in the original input order, never summed: transposed_layer). The
      features moved per layer shrink by the duplication factor.
  Both are exact against the reference: the same products, added in the same ascending
  input order, so bit-identical results. Rule: "merged" when merging shrinks the total
  feature width of the layers by at least 2x (true for every challenge network), else
  "dedup" (a network without duplicate neurons). Both variants are the same kernel, compiled
  once per padded column length KW (1, 2 or a multiple of 4). No shared-memory tile variant
  is needed: the 128-byte line layout keeps the gathers coalesced at every N, so N = 65536
  (a row is 256 KB) runs the same code.
* Fused segments (spdnn_fused): the merged network's layers no wider than `fuse_width`
  (rule: 256, i.e. every layer after the first at N <= 4096) run several per launch, one
  block per tile of 32 rows whose features stay in shared memory, each layer's columns
  copied to shared memory (cp.async) while the previous layer computes. A segment runs to
  the next check point, so narrow late layers cost neither a launch each nor HBM traffic;
  a tile whose rows all die stops early. Same terms and order: still bit-identical.
  Full-width (dedup) layers fuse the same way (spdnn_fused_scatter; rule: up to 1024 wide)
  with one tile buffer: each warp's distinct columns are computed into registers, then
  scattered to their output neurons after a barrier.
* Input load (spdnn_densify): each batch's CSR rows written as dense tile lines (zeros
  included), so no memset and no scattered 4-byte stores.
* Active-row compaction: the host reads the active count at check points (every layer while
  a layer moves more than `check_bytes` of features, else every `check_every` layers) and
  compacts (prefix sum + copy of the surviving rows, their original indices carried along)
  when at least 1/16 of the rows (and at least one tile) died; a check point that finds
  nothing to compact doubles the interval to the next (up to 8 x check_every). After such a
  quiet check point, check points only peek: the counts are copied back asynchronously and
  read at the next one (waiting for that earlier copy only), which blocks and compacts only if
  the peek saw enough rows die, so stable rows never make the GPU wait for the host. Rows that
  died but were not yet compacted stay zero and cost bandwidth only; a tile of 32 dead rows is
  skipped. (The rules: checkpoints.CheckPolicy.)
* Saturated rows: a row that is 32 at every feature stays so through any layer that maps an
  all-32 row to an all-32 row (each of the challenge's columns sums to 2: 64 + b clips to
  32). Prepare replays each layer's arithmetic on such a row (keeps_saturated; exact, not a
  bound); from the first layer after which every layer keeps them (carry_start), check
  points count the saturated rows (spdnn_saturated) and a compaction drops them with the
  dead ones, keeping their indices: they are carried to the end as all-32 rows, without
  computing them. The survivors saturate by layer 20-30, so most of a deep network is never
  computed, exactly (same categories, counts and values; carry_saturated=False turns it off).
* Batches: rows are processed in batches sized from free GPU memory; the next batch's
  inputs are staged in pinned memory and copied on a second stream while the current batch
  computes.
* General layered networks (prepare_layered / infer_layered: a spdnn.dag.layered.LayeredNetwork
  such as SNICIT's pruned MNIST networks: any widths, any nonzeros per column, a bias per
  neuron on every output, identity or clamped activations) run through the same plan and
  runner with the kernels' LAYERED build (a bias per distinct column, per-layer activation
  arguments; argument lists: kernel_args.py). Rows are dropped only where a zero row stays
  zero in every later layer (layer_plan.plan_network's zero_from; before it every row stays
  live and no check point is needed), saturated rows carried only where the replay with the
  layer's biases says so. Same terms, order and roundings as the CPU LayeredEngine: its
  outputs bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import challenge
from .base import Engine, InferenceResult
from .checkpoints import CheckPoints, CheckPolicy
from .device import DeviceBuffers, compile_module, open_device
from .kernel_args import (
    KERNELS,
    compile_options,
    formats,
    layer_act_args,
    layer_smem_pad,
    level_args,
    segment_act_args,
)
from .layer_plan import (  # noqa: F401  (the plan's names, re-exported: spdnn.engines.cuda.transposed_layer, ...)
    FUSE_TILE_BYTES_PER_WIDTH,
    FUSE_WIDTH,
    SCATTER_REGS,
    GeneralNetwork,
    LayerPlan,
    NetworkPlan,
    carry_start,
    columns_ahead,
    distinct_rows,
    fuse_bytes,
    fuse_width_limit,
    keeps_saturated,
    layer_acts,
    pad_width,
    plan_layers,
    plan_network,
    sorted_columns,
    transposed_layer,
)

log = logging.getLogger(__name__)
KERNEL_FILE = Path(__file__).parent / "kernels" / "spdnn_layer.cu"
WARPS = 16  # warps per block of every kernel (-DWARPS): measured best or near-best at every N (docs/model.md)
DENSIFY_COLS = 64  # input columns per warp of the input load (kernel macro of the same name)


@dataclass
class _DeviceLayer:
    """A layer as uploaded: its shape, its columns' device addresses (cidx, cval: inside the one
    allocation of all layers' columns), its output lists (device allocations), whether it fuses.
    LAYERED build: its column biases' address (cbias), mode bits and clamp (lo, hi), whether
    every row stays live after it (keep_rows) and its saturation level."""

    kw: int
    ucols: int
    win: int
    wout: int
    cidx: np.intp
    cval: np.intp
    out_ptr: Any
    out_list: Any
    fused: bool
    cbias: np.intp = np.intp(0)
    mode: int = 0
    lo: float = 0.0
    hi: float = challenge.CLIP
    keep_rows: bool = False
    level: float = challenge.CLIP


@dataclass
class _Run:
    """One call of _run: its inputs in batches, the device buffers and pinned host arrays they
    use, the compiled kernels, and what the details report."""

    inputs: sp.csr_matrix
    batch: int
    starts: list[int]
    layers: int
    max_nnz: int
    warps: int
    policy: CheckPolicy
    buf: list  # two feature buffers (a layer reads one, writes the other)
    flags: list  # three flag buffers, rotating: layer k writes flags[k % 3]
    pos: Any
    alive: list  # two buffers of the rows' original indices (a compaction copies one into the other)
    total: Any
    counts: Any  # counts[k]: live rows after layer k; counts[layers + 1 + k]: how many of them are saturated
    sat: Any
    carried: Any  # original indices of the carried (saturated) rows
    sat_at: np.intp
    nstage: int
    stage_dev: list  # per staging slot: (row pointers, columns, values) of a batch's inputs
    staged: list  # per staging slot: the event of its upload on the copy stream
    counts_host: np.ndarray
    peek_host: np.ndarray
    fns: dict = field(default_factory=dict)  # kw -> compiled kernels
    start: Any = None
    end: Any = None
    checks: int = 0
    compactions: int = 0
    peeks: int = 0
    carried_rows: int = 0
    untimed: float = 0.0
    active_total: np.ndarray | None = None
    categories: list = field(default_factory=list)
    values: list = field(default_factory=list)


@dataclass
class _Batch:
    """One batch's rows on the device. nrows: rows in the buffers (live, dead not yet compacted);
    cur: the feature buffer holding the current features; a_cur: the alive buffer holding their
    original indices; counted_prev: the last layer's rows are counted already; n_carried:
    saturated rows left (their indices in carried); known: layers whose count was read."""

    index: int
    start: int
    nrows: int
    checks: CheckPoints
    active: np.ndarray  # rows active after each layer (carried rows included)
    cur: int = 0
    a_cur: int = 0
    counted_prev: bool = True  # nothing to count before layer 0
    n_carried: int = 0
    known: int = 0
    peek_event: Any = None  # the event of the pending peek's copy (None: no peek pending)


class CudaEngine(Engine):
    """Fused pycuda kernels with active-row compaction; see the module docstring."""

    name = "cuda"

    def __init__(
        self,
        device: int = 0,
        variant: str = "auto",
        batch_rows: int | None = None,
        check_every: int = 8,
        check_bytes: float = 64e6,
        compact_fraction: float = 1 / 16,
        memory_fraction: float = 0.85,
        warps: int = WARPS,
        grid_factor: int = 16,
        fuse_width: int | None = None,
        stage_weights: bool = True,
        carry_saturated: bool = True,
        layer_blocks_per_sm: int | None = None,
    ):
        if variant not in ("auto", "dedup", "merged"):
            raise ValueError(f"variant must be auto, dedup or merged, not {variant!r}")
        self._device = open_device(device)
        cuda = self.cuda = self._device.cuda
        self.dev, self.arch = self._device.dev, self._device.arch
        self.variant = variant
        # the check-point and batch policy's settings (read at every infer: see _policy)
        self.batch_rows = batch_rows
        self.check_every = max(1, int(check_every))
        self.check_bytes = float(check_bytes)
        self.compact_fraction = compact_fraction
        self.memory_fraction = memory_fraction
        # warps per block (the kernels' -DWARPS, 1..32) and the grid's blocks per SM target
        # (gx = ceil(sms * grid_factor / tiles) column blocks per tile); spdnn.model tunes them
        if not 1 <= int(warps) <= 32:
            raise ValueError(f"warps must be in 1..32, not {warps!r}")
        self.warps = int(warps)
        self.grid_factor = max(1, int(grid_factor))
        self.sms = self.dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
        # widest layer run in fused segments (its tile in shared memory: two buffers merged, one
        # in a full-width scatter segment); None: the variant's rule (layer_plan.default_fuse_width)
        self.smem_optin = self.dev.get_attribute(cuda.device_attribute.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        limit = fuse_width_limit(self.smem_optin, "dedup")  # the wider of the two kernels' limits
        if fuse_width is not None and not 0 <= int(fuse_width) <= limit:
            raise ValueError(
                f"fuse_width must be in 0..{limit} on {self.dev.name()} (shared memory), not {fuse_width!r}"
            )
        self.fuse_width = None if fuse_width is None else int(fuse_width)
        # fused segments copy each layer's columns to shared memory ahead of use (cp.async)
        self.stage_weights = bool(stage_weights)
        # rows that are 32 at every feature are carried, not computed, through the layers that
        # keep them so (every layer of the challenge's networks; see carry_start)
        self.carry_saturated = bool(carry_saturated)
        # a diagnostic: spdnn_layer's resident blocks an SM capped by padding its shared memory, so
        # the tiles an SM works on at once can be set apart from the warps a block (docs/model.md)
        self.layer_pad = 0
        self.layer_blocks_per_sm = None if layer_blocks_per_sm is None else int(layer_blocks_per_sm)
        if self.layer_blocks_per_sm is not None:
            per_sm = self.dev.get_attribute(cuda.device_attribute.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)
            self.layer_pad = layer_smem_pad(self.layer_blocks_per_sm, per_sm, self.smem_optin)
        self._modules: dict[tuple[int, int, bool, bool], tuple] = {}
        self.layered = False  # prepare(): a GeneralNetwork runs the kernels' LAYERED build
        self.compute = cuda.Stream()
        self.copy = cuda.Stream()
        self._layers: list[_DeviceLayer] = []
        self._allocs: list = []
        self._buffers = DeviceBuffers(cuda)  # feature, flag and staging buffers, kept between calls
        self._pinned_arrays: dict[str, np.ndarray] = {}

    def __del__(self):
        if hasattr(self, "_device"):
            self._device.release()

    def device(self) -> str:
        return self.dev.name()

    # --------------------------------------------------------------------------- kernels

    def _module(self, kw: int):
        key = (kw, self.warps, self.stage_weights, self.layered)
        if key not in self._modules:
            options = compile_options(kw, self.warps, self.stage_weights, SCATTER_REGS, self.layered)
            mod = compile_module(KERNEL_FILE, self.arch, options)
            fns: dict = {}
            for name, fmt in formats(self.layered).items():  # the build's argument lists
                fns[name] = mod.get_function(KERNELS[name])
                fns[name].prepare(fmt)
            self._modules[key] = (mod, fns)
        return self._modules[key][1]

    def _fuse_smem(self, fns, name: str, kw: int) -> int:
        """Dynamic shared memory of a fused launch of kernel `name`; opts it in beyond the default
        48 KB once."""
        nbytes = fuse_bytes(self.fuse_wmax, kw, self.stage_weights, self.chosen, self.fuse_ucmax)
        if fns.get(f"{name}_optin", 0) < nbytes:  # (static shared memory counts towards 48 KB too)
            fns[name].set_attribute(self.cuda.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes)
            fns[f"{name}_optin"] = nbytes
        return nbytes

    def _layer_smem(self, fns) -> int:
        """spdnn_layer's dynamic shared memory: 0, or layer_blocks_per_sm's padding (opted in once)."""
        if self.layer_pad and not fns.get("layer_optin"):  # beyond 48 KB needs the opt-in
            fns["layer"].set_attribute(self.cuda.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, self.layer_pad)
            fns["layer_optin"] = True
        return self.layer_pad

    def _to_device(self, array: np.ndarray):
        alloc = self.cuda.to_device(np.ascontiguousarray(array))
        self._allocs.append(alloc)
        return alloc

    # --------------------------------------------------------------------------- prepare

    def prepare(self, weights, layers: int) -> None:
        """Plan the layers (layer_plan.plan_network) and upload them. weights: the challenge's
        Weights, or a layer_plan.GeneralNetwork (see prepare_layered)."""
        super().prepare(weights, layers)
        self.layered = isinstance(weights, GeneralNetwork)
        self.bias = np.float32(0.0 if self.layered else weights.bias)  # (the LAYERED build has per-column biases)
        self._layers, self._allocs = [], []
        t0 = time.perf_counter()
        net = plan_network(
            weights,
            layers,
            self.variant,
            fuse_width=self.fuse_width,
            smem_optin=self.smem_optin,
            stage_weights=self.stage_weights,
            carry_saturated=self.carry_saturated,
            warps=self.warps,
        )
        self._upload(net)
        self.chosen, self.carry_from, self.fuse_wmax = net.variant, net.carry_from, net.fuse_wmax
        self.fuse_ucmax, self.fuse_width_used = net.fuse_ucmax, net.fuse_width
        self.zero_from, self.sat_level, self.out_width = net.zero_from, net.sat_level, net.out_width
        self.max_width = net.max_width
        self.final_map = net.final_map  # output neuron j of the last layer holds merged feature final_map[j]
        self.prepare_seconds = time.perf_counter() - t0
        self.widths, self.kws, self.distinct = net.widths, net.kws, net.distinct
        self.fused_layers = net.fused_layers

    def _upload(self, net: NetworkPlan) -> None:
        """All layers' columns in one allocation (the fused kernels index it by layer offset;
        each layer's start a multiple of 4 entries: int4/float4 loads need 16-byte alignment),
        each layer's output lists, and all layers' output lists in one allocation too (the
        scatter segments index them by layer: out_ptr[poff[k]:poff[k + 1]], absolute positions)."""
        plan = net.layers
        woff = np.zeros(len(plan) + 1, dtype=np.int64)
        np.cumsum([-(-len(p.cidx) // 4) * 4 for p in plan], out=woff[1:])
        cidx_host = np.zeros(int(woff[-1]), dtype=np.int32)
        cval_host = np.zeros(int(woff[-1]), dtype=np.float32)
        for k, p in enumerate(plan):
            cidx_host[woff[k] : woff[k] + len(p.cidx)] = p.cidx
            cval_host[woff[k] : woff[k] + len(p.cval)] = p.cval
        cidx_all, cval_all = self._to_device(cidx_host), self._to_device(cval_host)
        poff = np.zeros(len(plan) + 1, dtype=np.int64)
        np.cumsum([p.ucols + 1 for p in plan], out=poff[1:])
        loff = np.cumsum([0] + [len(p.out_list) for p in plan])
        self._weights_dev = dict(
            cidx=cidx_all,
            cval=cval_all,
            woff=self._to_device(woff),
            widths=self._to_device(np.array([plan[0].win] + [p.wout for p in plan], dtype=np.int32)),
            poff=self._to_device(poff.astype(np.int32)),
            out_ptr=self._to_device(np.concatenate([p.out_ptr + np.int32(lo) for p, lo in zip(plan, loff)])),
            out_list=self._to_device(np.concatenate([p.out_list for p in plan])),
            cbias=np.intp(0),
            lact=np.intp(0),
        )
        lact = None
        if net.layered:  # all layers' column biases in one allocation, layer k's from lact[k].boff
            cbias_host, lact = layer_acts(plan)
            self._weights_dev["cbias"] = self._to_device(np.concatenate([cbias_host, np.zeros(1, np.float32)]))
            self._weights_dev["lact"] = self._to_device(lact)
        for k, p in enumerate(plan):
            layer = _DeviceLayer(
                kw=p.kw,
                ucols=p.ucols,
                win=p.win,
                wout=p.wout,
                cidx=np.intp(int(cidx_all) + 4 * int(woff[k])),
                cval=np.intp(int(cval_all) + 4 * int(woff[k])),
                out_ptr=self._to_device(p.out_ptr),
                out_list=self._to_device(p.out_list),
                fused=p.fused,
            )
            if lact is not None:
                layer.cbias = np.intp(int(self._weights_dev["cbias"]) + 4 * int(lact["boff"][k]))
                layer.mode, layer.lo, layer.hi = int(lact["mode"][k]), float(lact["lo"][k]), float(lact["hi"][k])
                layer.keep_rows = p.keep_rows
                layer.level = challenge.CLIP if p.act.level is None else p.act.level
            self._layers.append(layer)

    # --------------------------------------------------------------------------- infer

    def _policy(self) -> CheckPolicy:
        """The check-point and batch policy of the engine's current settings."""
        return CheckPolicy(
            check_every=self.check_every,
            check_bytes=self.check_bytes,
            compact_fraction=self.compact_fraction,
            memory_fraction=self.memory_fraction,
            batch_rows=self.batch_rows,
        )

    def _plan_batch(self, inputs: sp.csr_matrix) -> int:
        nnz_row = inputs.nnz / max(1, inputs.shape[0])
        return self._policy().batch(inputs.shape[0], self.max_width, nnz_row, lambda: self.cuda.mem_get_info()[0])

    def _pinned(self, key: str, count: int, dtype):
        """A page-locked host array kept between calls (grown when too small)."""
        have = self._pinned_arrays.get(key)
        if have is None or len(have) < count:
            have = self.cuda.pagelocked_empty(max(16, count), dtype)
            self._pinned_arrays[key] = have
        return have

    def release(self) -> None:
        """Free the feature buffers kept between calls (the weights stay on the GPU)."""
        if hasattr(self, "_buffers"):
            self._buffers.free()

    def infer(self, inputs: sp.csr_matrix, return_values: bool = True) -> InferenceResult:
        """Run the layers; `seconds` spans the first kernel to the categories (CUDA events).
        (The work: _infer.)"""
        return self._infer(inputs, return_values)[0]

    def prepare_layered(self, net) -> None:
        """Plan and upload a general layered network: a spdnn.dag.layered.LayeredNetwork (any
        widths and nonzeros per column, a bias per neuron on every output, activations identity,
        relu, relu_clip or relu_clip1; others are refused: they would not be exact)."""
        self.prepare(GeneralNetwork.from_layered(net), len(net.weights))

    def infer_layered(self, inputs) -> tuple[np.ndarray, InferenceResult]:
        """The prepared layered network on a batch (dense (batch, width_0) or CSR): its last
        layer's values, float32 (batch, width_L), every row (rows dropped as dead are zero
        there, exactly), with the run's InferenceResult (seconds, active rows, details)."""
        # densified first, as the CPU LayeredEngine does (spdnn.dag.engine.dense_inputs): the same
        # float32 inputs, duplicate entries included
        dense = np.asarray(inputs.toarray() if sp.issparse(inputs) else inputs, dtype=np.float32)
        if dense.ndim == 1:
            dense = dense[None, :]
        if dense.ndim != 2:
            raise ValueError(f"inputs have shape {dense.shape}, not (batch, {self.weights.neurons})")
        if not np.all(np.isfinite(dense)):
            raise ValueError("inputs must be finite (the GPU's clamp would turn a NaN into a number, numpy's not)")
        x = sp.csr_matrix(dense)
        result, values = self._infer(x, True)
        out = np.zeros((x.shape[0], self.out_width), dtype=np.float32)
        if values is not None:
            out[result.categories] = values
        return out, result

    def _infer(self, inputs: sp.csr_matrix, return_values: bool) -> tuple[InferenceResult, np.ndarray | None]:
        """Run the layers; `seconds` spans the first kernel to the categories (CUDA events).
        Returns the result and, when asked, the final values dense (rows = categories).

        The first batch's inputs are uploaded before the timer starts (inputs already on the
        device, as the interface says); later batches are uploaded on a second stream while
        the previous batch computes, inside the timed span. Reading the final values back
        (`values`) is outside it. A batch that does not fit in GPU memory is halved (and the
        log says so) down to one tile of 32 rows; a CUDA error names the kernel and its
        configuration.
        """
        if not (sp.isspmatrix_csr(inputs) and inputs.dtype == np.float32 and inputs.has_canonical_format):
            inputs = sp.csr_matrix(inputs, dtype=np.float32, copy=True)
            inputs.sum_duplicates()  # the input load needs each row's columns ascending and distinct
        n = inputs.shape[1]
        if n != self.weights.neurons:
            raise ValueError(f"inputs have {n} columns, the network {self.weights.neurons} neurons")
        if self.chosen == "dedup" and self.fused_layers and self.fuse_ucmax > self.warps * SCATTER_REGS:
            # the plan gave each warp at most SCATTER_REGS distinct columns at prepare's warps
            raise ValueError(
                f"warps is {self.warps}, but the full-width fused layers were planned for at least "
                f"{-(-self.fuse_ucmax // SCATTER_REGS)} warps: call prepare() again after changing warps"
            )
        batch = self._plan_batch(inputs)
        while True:
            self._launch: str | tuple = "setup"
            try:
                return self._run(inputs, batch, return_values)
            except self.cuda.MemoryError as err:
                self.release()
                if batch <= 32:
                    raise MemoryError(
                        f"GPU memory too small even for one tile of 32 rows of {self.max_width} "
                        f"features ({self.device()}): {err}"
                    ) from err
                smaller = max(32, batch // 2 // 32 * 32)
                log.warning(
                    "a batch of %d rows does not fit in GPU memory (%s); shrinking it to %d rows", batch, err, smaller
                )
                batch = smaller
            except self.cuda.Error as err:
                where = (
                    self._launch
                    if isinstance(self._launch, str)
                    else ("kernel {} for layer {} (KW {}, {} blocks)".format(*self._launch))
                )
                raise RuntimeError(
                    f"CUDA error at or after {where} on {self.device()} (variant {self.chosen}, "
                    f"warps {self.warps}, grid factor {self.grid_factor}, batch {batch} rows): {err}"
                ) from err

    def _run(self, inputs: sp.csr_matrix, batch: int, return_values: bool) -> tuple[InferenceResult, np.ndarray | None]:
        """Every batch through every layer (_batch_layers), timed from the first batch's first
        kernel to the last batch's categories; with the final values dense (rows = categories)."""
        cuda = self.cuda
        n_inputs, n = inputs.shape
        run = self._allocate(inputs, batch)
        run.active_total = np.zeros(run.layers, dtype=np.int64)
        run.start, run.end = cuda.Event(), cuda.Event()
        wall0 = time.perf_counter()
        if run.starts:
            self._stage(run, 0)
        run.fns = {lay.kw: self._module(lay.kw) for lay in self._layers}  # compiled for self.warps
        for b, s in enumerate(run.starts):
            bt = self._begin_batch(run, b, s)
            self._batch_layers(run, bt)
            self._end_batch(run, bt, return_values)
        run.end.record(self.compute)
        run.end.synchronize()
        seconds = run.start.time_till(run.end) / 1e3 - run.untimed if run.starts else 0.0
        wall = time.perf_counter() - wall0
        cats = np.concatenate(run.categories) if run.categories else np.zeros(0, dtype=np.int64)
        dense = None
        if return_values and run.values:
            dense = np.concatenate(run.values)
            if self.final_map is not None:
                dense = dense[:, self.final_map]
            vals = sp.csr_matrix(dense)
        else:
            vals = sp.csr_matrix((0, self.out_width), dtype=np.float32)
        details = dict(
            variant=self.chosen,
            batch_rows=batch,
            batches=len(run.starts),
            checks=run.checks,
            compactions=run.compactions,
            peeks=run.peeks,
            carried_rows=run.carried_rows,
            carry_from=self.carry_from,
            wall_seconds=wall,
            arch=self.arch,
            warps=run.warps,
            grid_factor=self.grid_factor,
            layer_blocks_per_sm=self.layer_blocks_per_sm,
            fuse_width=self.fuse_width_used,
            fused_layers=self.fused_layers,
            stage_weights=self.stage_weights,
            prepare_seconds=getattr(self, "prepare_seconds", None),
            widths=sorted(set(self.widths)),
            kw=sorted(set(self.kws)),
            layered=self.layered,
            zero_from=self.zero_from,
        )
        result = InferenceResult(
            categories=cats,
            active_rows=[int(a) for a in run.active_total],
            seconds=seconds,
            engine=self.name,
            device=self.device(),
            values=vals,
            details=details,
        )
        return result, dense

    def _allocate(self, inputs: sp.csr_matrix, batch: int) -> _Run:
        """The run's device buffers (kept between calls, grown when too small) and pinned arrays."""
        cuda = self.cuda
        n_inputs = inputs.shape[0]
        layers = len(self._layers)
        starts = list(range(0, n_inputs, batch))
        max_nnz = max([int(inputs.indptr[min(s + batch, n_inputs)] - inputs.indptr[s]) for s in starts] + [1])
        width = self.max_width
        get = self._buffers.get
        buf = [get(f"buf{i}", batch * width * 4) for i in range(2)]
        flags = [get(f"flags{i}", batch * 4) for i in range(3)]
        pos = get("pos", batch * 4)
        alive = [get(f"alive{i}", batch * 4) for i in range(2)]
        total = get("total", 4)
        counts = get("counts", 8 * (layers + 1))
        sat = get("sat", batch * 4)
        carried = get("carried", batch * 4)
        sat_at = np.intp(int(counts) + 4 * (layers + 1))
        nstage = 1 if len(starts) == 1 else 2
        stage_dev = [
            [get(f"st{i}ptr", (batch + 1) * 8), get(f"st{i}col", max_nnz * 4), get(f"st{i}val", max_nnz * 4)]
            for i in range(nstage)
        ]
        staged = [cuda.Event(), cuda.Event()]
        counts_host = self._pinned("counts_host", 2 * (layers + 1), np.uint32)
        peek_host = self._pinned("peek_host", 2 * (layers + 1), np.uint32)
        return _Run(
            inputs=inputs,
            batch=batch,
            starts=starts,
            layers=layers,
            max_nnz=max_nnz,
            warps=self.warps,
            policy=self._policy(),
            buf=buf,
            flags=flags,
            pos=pos,
            alive=alive,
            total=total,
            counts=counts,
            sat=sat,
            carried=carried,
            sat_at=sat_at,
            nstage=nstage,
            stage_dev=stage_dev,
            staged=staged,
            counts_host=counts_host,
            peek_host=peek_host,
        )

    def _stage(self, run: _Run, b: int) -> None:
        """Upload batch b's inputs (CSR rows) to its staging slot; its event marks the end."""
        cuda, inputs = self.cuda, run.inputs
        s = run.starts[b]
        e = min(s + run.batch, inputs.shape[0])
        lo, hi = int(inputs.indptr[s]), int(inputs.indptr[e])
        ptr = (inputs.indptr[s : e + 1] - lo).astype(np.int64)
        parts = (ptr, inputs.indices[lo:hi].astype(np.int32, copy=False), inputs.data[lo:hi])
        if run.nstage == 1:  # one batch: plain copies, finished before the timer starts
            for dev, host in zip(run.stage_dev[0], parts):
                if host.size:
                    cuda.memcpy_htod(dev, np.ascontiguousarray(host))
        else:  # pinned staging, asynchronous on the copy stream
            for i, (dev, host) in enumerate(zip(run.stage_dev[b % 2], parts)):
                pin = self._pinned(f"pin{b % 2}_{i}", max(run.max_nnz, run.batch + 1), host.dtype)
                pin[: host.size] = host
                if host.size:
                    cuda.memcpy_htod_async(dev, pin[: host.size], self.copy)
        run.staged[b % 2].record(self.copy)

    def _begin_batch(self, run: _Run, b: int, s: int) -> _Batch:
        """Load batch b (rows s...) as dense tile lines, number its rows, stage the next batch,
        reset the counts and flags."""
        cuda, warps = self.cuda, run.warps
        nrows = min(run.batch, run.inputs.shape[0] - s)
        self.compute.wait_for_event(run.staged[b % 2])
        if b == 0:
            run.start.record(self.compute)
        tiles = (nrows + 31) // 32
        bt = _Batch(
            index=b, start=s, nrows=nrows, checks=CheckPoints(run.policy), active=np.zeros(run.layers, dtype=np.int64)
        )
        first_fns = run.fns[self._layers[0].kw]
        p_d, c_d, v_d = run.stage_dev[b % run.nstage]
        win0 = self._layers[0].win
        gxd = math.ceil(win0 / (DENSIFY_COLS * warps))
        self._launch = ("spdnn_densify", "input", 0, tiles * gxd)
        first_fns["densify"].prepared_async_call(
            (tiles * gxd, 1),
            (warps * 32, 1, 1),
            self.compute,
            p_d,
            c_d,
            v_d,
            np.int32(nrows),
            np.int32(win0),
            np.int32(gxd),
            run.buf[bt.cur],
        )
        first_fns["iota"].prepared_async_call(
            (min(1024, (nrows + 255) // 256), 1), (256, 1, 1), self.compute, run.alive[0], np.int32(nrows), np.int32(s)
        )
        if b + 1 < len(run.starts):
            # the next batch's staging buffers were last read by batch b-1's densify,
            # which finished before batch b-1's last check point synchronised
            self._stage(run, b + 1)
        cuda.memset_d32_async(run.counts, 0, 2 * (run.layers + 1), self.compute)
        cuda.memset_d32_async(run.flags[2], 1, nrows, self.compute)  # "previous" flags: all rows live
        cuda.memset_d32_async(run.flags[0], 0, nrows, self.compute)
        return bt

    def _batch_layers(self, run: _Run, bt: _Batch) -> None:
        """The layers, a launch at a time (a layer, or a fused segment up to the next check
        point), each followed by a check point when the policy says so; stops early when the
        batch has no rows left."""
        k0 = 0
        while k0 < run.layers:
            k1, fns = self._launch_layers(run, bt, k0)
            k, lay = k1 - 1, self._layers[k1 - 1]
            last = k == run.layers - 1
            if lay.keep_rows and not self.carry_from <= k + 1:
                k0 = k1  # every row stays live after this layer and none is carried: nothing to check
                continue
            # fused layers move no features through memory: only the interval makes them check
            layer_bytes = 0 if lay.fused else bt.nrows * lay.wout * 4
            if bt.checks.due(k1 - k0, layer_bytes, last) and not self._check_point(run, bt, fns, k, last):
                bt.nrows = 0
                return
            k0 = k1

    def _launch_layers(self, run: _Run, bt: _Batch, k0: int) -> tuple[int, dict]:
        """Launch layer k0 (and, fused, the fusable layers after it up to the next check point);
        returns the next layer and the kernels used."""
        first = self._layers[k0]
        fns = run.fns[first.kw]
        warps, nrows, cur, flags = run.warps, bt.nrows, bt.cur, run.flags
        tiles = (nrows + 31) // 32
        count_ptr = np.intp(0) if bt.counted_prev else np.intp(int(run.counts) + 4 * (k0 - 1))
        if first.fused:
            # one launch for the fusable layers up to the next check point
            k1, room = k0 + 1, bt.checks.room()
            while k1 < run.layers and k1 - k0 < room and self._layers[k1].fused and self._layers[k1].kw == first.kw:
                k1 += 1
            wd = self._weights_dev
            # merged: outputs are the columns (two tile buffers); full width: scattered (one)
            lists: tuple
            sizes: tuple
            if self.chosen == "dedup":
                name, lists = "fused_scatter", (wd["poff"], wd["out_ptr"], wd["out_list"])
                sizes = (np.int32(self.fuse_wmax), np.int32(self.fuse_ucmax))
            else:
                name, lists, sizes = "fused", (), (np.int32(self.fuse_wmax),)
            self._launch = (f"spdnn_{name}", f"{k0}..{k1 - 1}", first.kw, tiles)
            fns[name].prepared_async_call(
                (tiles, 1),
                (warps * 32, 1, 1),
                self.compute,
                run.buf[cur],
                run.buf[1 - cur],
                wd["cidx"],
                wd["cval"],
                wd["woff"],
                wd["widths"],
                *lists,
                np.int32(k0),
                np.int32(k1),
                np.int32(nrows),
                *sizes,
                *segment_act_args(self.layered, self.bias, int(wd["cbias"]), int(wd["lact"])),
                flags[(k0 - 1) % 3],
                flags[(k1 - 1) % 3],
                flags[k1 % 3],
                run.counts,
                count_ptr,
                shared_size=self._fuse_smem(fns, name, first.kw),
            )
            bt.counted_prev = True  # every layer of the segment counted its rows
        else:
            k1 = k0 + 1
            gx = max(1, min(math.ceil(first.ucols / warps), math.ceil(self.sms * self.grid_factor / tiles)))
            self._launch = ("spdnn_layer", k0, first.kw, tiles * gx)  # named in a CUDA error
            fns["layer"].prepared_async_call(
                (tiles * gx, 1),
                (warps * 32, 1, 1),
                self.compute,
                run.buf[cur],
                run.buf[1 - cur],
                first.cidx,
                first.cval,
                first.out_ptr,
                first.out_list,
                np.int32(first.ucols),
                np.int32(first.win),
                np.int32(first.wout),
                np.int32(nrows),
                np.int32(gx),
                *layer_act_args(self.layered, self.bias, first.cbias, first.mode, first.lo, first.hi),
                flags[(k0 - 1) % 3],
                flags[k0 % 3],
                flags[(k0 + 1) % 3],
                count_ptr,
                shared_size=self._layer_smem(fns),
            )
            bt.counted_prev = False
        bt.cur = 1 - cur
        return k1, fns

    def _check_point(self, run: _Run, bt: _Batch, fns: dict, k: int, last: bool) -> bool:
        """The check point after layer k: count its rows (and the saturated ones where they are
        carried), then peek or block as the policy decides (CheckPoints.check_point), dropping
        the carried rows and compacting when it says so. False: the batch has no rows left."""
        lay, nrows = self._layers[k], bt.nrows
        tiles = (nrows + 31) // 32
        fcur = run.flags[k % 3]
        if not bt.counted_prev:
            fns["count"].prepared_async_call(
                (min(256, (nrows + 255) // 256), 1),
                (256, 1, 1),
                self.compute,
                fcur,
                np.int32(nrows),
                np.intp(int(run.counts) + 4 * k),
            )
            bt.counted_prev = True
        # Saturated rows are counted at check points from which every later layer keeps them
        # so; a check point that can drop them (with the dead ones) does.
        carry = self.carry_from <= k + 1 < run.layers
        if carry:
            self._launch = ("spdnn_saturated", k, lay.kw, tiles)
            self._saturated(run, bt, fns, k, np.intp(0), np.intp(int(run.sat_at) + 4 * k))  # count only
        d = bt.checks.check_point(
            k,
            last,
            nrows,
            peeked=lambda j: self._peeked(run, bt, j),
            counts=lambda j: self._read_counts(run, bt, j, carry),
        )
        if not d.block:
            self._peek(run, bt, k)
            return True
        bt.peek_event = None
        if d.carry:
            self._drop_saturated(run, bt, fns, k, d.carry)
        if d.rows == 0:
            return False
        if d.compact:
            self._compact(run, bt, fns, k, d.rows)
        return True

    def _saturated(self, run: _Run, bt: _Batch, fns: dict, k: int, sat, count) -> None:
        """spdnn_saturated on the batch's rows after layer k: adds their number to `count` and,
        with `sat` (not 0), marks them there and clears their flags."""
        nrows = bt.nrows
        fns["saturated"].prepared_async_call(
            ((nrows + 31) // 32, 1),
            (run.warps * 32, 1, 1),
            self.compute,
            run.buf[bt.cur],
            np.int32(self._layers[k].wout),
            np.int32(nrows),
            run.flags[k % 3],
            sat,
            count,
            *level_args(self.layered, self._layers[k].level),
        )

    def _peek(self, run: _Run, bt: _Batch, k: int) -> None:
        """Copy the counts back without waiting (read at the next check point, see _peeked).

        While check points find nothing to compact, they do not stop the GPU: the counts are
        copied back asynchronously (a "peek") and read at the next check point, which blocks
        (and compacts) only if that peek saw enough rows die. Waiting for the previous peek
        (never for the current one) keeps the decision deterministic and the host at most one
        interval ahead, while the GPU has that interval queued."""
        run.peeks += 1
        self.cuda.memcpy_dtoh_async(run.peek_host[: 2 * (run.layers + 1)], run.counts, self.compute)
        event = bt.peek_event if bt.peek_event is not None else self.cuda.Event()
        event.record(self.compute)
        bt.peek_event = event

    def _peeked(self, run: _Run, bt: _Batch, j: int) -> tuple[int, int]:
        """(active, saturated) after layer j as the pending peek copied them (waits for that copy)."""
        bt.peek_event.synchronize()
        return int(run.peek_host[j]), int(run.peek_host[run.layers + 1 + j])

    def _read_counts(self, run: _Run, bt: _Batch, k: int, carry: bool) -> tuple[int, int]:
        """(active, saturated) after layer k, read now: the host waits for the GPU. Records the
        active rows of the layers since the last read."""
        run.checks += 1
        self.cuda.memcpy_dtoh_async(run.counts_host[: 2 * (run.layers + 1)], run.counts, self.compute)
        self.compute.synchronize()
        counts_host, known = run.counts_host, bt.known
        bt.active[known : k + 1] = counts_host[known : k + 1]
        bt.active[known : k + 1] += bt.n_carried
        bt.known = k + 1
        return int(counts_host[k]), (int(counts_host[run.layers + 1 + k]) if carry else 0)

    def _drop_saturated(self, run: _Run, bt: _Batch, fns: dict, k: int, saturated: int) -> None:
        """Mark the saturated rows (their flags cleared), keep their original indices (carried),
        so that the compaction drops them."""
        lay, nrows, cur, warps = self._layers[k], bt.nrows, bt.cur, run.warps
        tiles = (nrows + 31) // 32
        self._launch = ("spdnn_saturated/spdnn_compact", k, lay.kw, tiles)
        self._saturated(run, bt, fns, k, run.sat, run.total)  # (count: scratch, the scan overwrites it)
        fns["scan"].prepared_async_call(
            (1, 1), (1024, 1, 1), self.compute, run.sat, np.int32(nrows), run.pos, run.total
        )
        fns["compact"].prepared_async_call(
            (tiles, 1),
            (warps * 32, 1, 1),
            self.compute,
            run.buf[cur],
            run.buf[1 - cur],
            np.int32(0),
            np.int32(nrows),
            np.int32(1),
            run.sat,
            run.pos,
            run.alive[bt.a_cur],
            np.intp(int(run.carried) + 4 * bt.n_carried),
        )
        bt.n_carried += saturated
        run.carried_rows += saturated

    def _compact(self, run: _Run, bt: _Batch, fns: dict, k: int, rows: int) -> None:
        """Keep only the flagged rows after layer k (prefix sum, then a copy of their features
        and original indices into the other buffers): the batch then holds `rows` rows."""
        lay, nrows, cur, a_cur, warps = self._layers[k], bt.nrows, bt.cur, bt.a_cur, run.warps
        tiles = (nrows + 31) // 32
        fcur = run.flags[k % 3]
        run.compactions += 1
        self._launch = ("spdnn_scan/spdnn_compact", k, lay.kw, tiles)
        fns["scan"].prepared_async_call((1, 1), (1024, 1, 1), self.compute, fcur, np.int32(nrows), run.pos, run.total)
        gxc = max(1, min(math.ceil(lay.wout / warps), math.ceil(self.sms * 16 / tiles)))
        fns["compact"].prepared_async_call(
            (tiles * gxc, 1),
            (warps * 32, 1, 1),
            self.compute,
            run.buf[cur],
            run.buf[1 - cur],
            np.int32(lay.wout),
            np.int32(nrows),
            np.int32(gxc),
            fcur,
            run.pos,
            run.alive[a_cur],
            run.alive[1 - a_cur],
        )
        bt.cur, bt.a_cur = 1 - cur, 1 - a_cur
        bt.nrows = rows
        # the next layer's "previous" flags: every compacted row is live
        self.cuda.memset_d32_async(fcur, 1, rows, self.compute)

    def _end_batch(self, run: _Run, bt: _Batch, return_values: bool) -> None:
        """The batch's categories (its live rows' and carried rows' original indices) and, when
        asked, its final values (read outside the timed span)."""
        cuda, nrows, n_carried = self.cuda, bt.nrows, bt.n_carried
        bt.active[bt.known :] += n_carried  # layers after the batch ended early: the carried rows
        run.active_total += bt.active
        wlast = self._layers[-1].wout
        ids = self._pinned("ids", 2 * run.batch, np.int32)
        if nrows:  # rows here are exactly the active ones (the last check point compacted them)
            cuda.memcpy_dtoh_async(ids[:nrows], run.alive[bt.a_cur], self.compute)
        if n_carried:
            cuda.memcpy_dtoh_async(ids[nrows : nrows + n_carried], run.carried, self.compute)
        self.compute.synchronize()
        batch_ids = ids[: nrows + n_carried].astype(np.int64)
        order = np.argsort(batch_ids, kind="stable")
        run.categories.append(batch_ids[order])
        if return_values and len(batch_ids):  # outside the timed span
            pause = time.perf_counter()
            dense = np.full((nrows + n_carried, wlast), self.sat_level, dtype=np.float32)  # carried rows
            if nrows:
                tiles = (nrows + 31) // 32
                raw = np.empty(tiles * wlast * 32, dtype=np.float32)
                cuda.memcpy_dtoh(raw, run.buf[bt.cur])
                dense[:nrows] = raw.reshape(tiles, wlast, 32).transpose(0, 2, 1).reshape(tiles * 32, wlast)[:nrows]
            run.values.append(dense[order])
            run.untimed += time.perf_counter() - pause
