"""The cuda engine's layer plan: what runs on the GPU, computed on the host (numpy only).

For every layer the plan holds its columns transposed (for every output column its KW
(input, value) pairs: CSC / transposed ELL), de-duplicated (identical columns are computed once
and written to every output neuron that has them) and padded to KW = 1, 2 or a multiple of 4.
Two variants (docs/design.md):

* "dedup": the distinct columns of each layer, outputs written at full width N.
* "merged": the layers rewritten into an equivalent narrower network. Neurons with identical
  columns carry identical values in every row, so only one copy of each is kept; the next
  layer's entries that read a copy are re-pointed at the kept one. Every column keeps all its
  original terms (32 on the challenge), in ascending ORIGINAL input order, never summed
  (see transposed_layer), so its sums are bit-identical to the reference's. RadiX-Net layers
  narrow from N to N/16 neurons: the features moved per layer shrink by the duplication factor.

The rules (pure functions of the plan and the device's shared memory): the variant ("merged"
when merging narrows the layers' total feature width at least 2x, else "dedup"), which layers
run in fused multi-layer segments (merged layers no wider than the fuse width, whose segment's
shared memory fits one block; full-width layers whose tile fits one buffer and whose distinct
columns fit the warps' registers) and from which layer saturated rows are carried (carry_start).
Nothing here imports pycuda: the plan is tested on the CPU (tests/test_cuda.py, test_model.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .. import challenge

VARIANTS = ("dedup", "merged")
# Fused segments: a tile of 32 rows double-buffered in shared memory needs 2 x 32 x 4 bytes
# per feature of the widest layer. Rule: fuse the merged network's layers up to 256 wide
# (N <= 4096 on the challenge; measured faster than a kernel per layer, docs/benchmarks.md).
FUSE_TILE_BYTES_PER_WIDTH = 2 * 32 * 4
FUSE_WIDTH = 256
# Full-width ("dedup") layers fuse in scatter segments (spdnn_fused_scatter): one tile buffer
# (32 x 4 bytes per feature) and each warp's distinct columns held in SCATTER_REGS registers
# (the kernel's FUSE_REGS), so a layer fuses when its distinct columns are at most
# warps x SCATTER_REGS. Rule: up to 1024 wide (N <= 1024 on the challenge, whose tail of a few
# latency-bound rows then costs one launch per check interval instead of one per layer).
SCATTER_TILE_BYTES_PER_WIDTH = 32 * 4
SCATTER_REGS = 16
FUSE_WIDTH_SCATTER = 1024


def pad_width(k: int) -> int:
    """Padded column length KW: 1, 2, or the next multiple of 4 (int4/float4 weight loads)."""
    return k if k <= 2 else 4 * math.ceil(k / 4)


def sorted_columns(w: sp.spmatrix) -> sp.csc_matrix:
    """The layer as CSC with ascending row indices in every column (its input order)."""
    csc = sp.csc_matrix(w)
    csc.sort_indices()
    return csc


def columns_ahead(weights, layers: int, threads: int | None = None):
    """sorted_columns of layers 0..layers-1, in order, converted by a thread pool a bounded
    window ahead (scipy's conversion releases the GIL): the part of prepare that does not
    depend on the previous layer, ~10x faster on a 16-core host for N = 65536."""
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        window = [pool.submit(sorted_columns, weights.layer(k)) for k in range(min(layers, 2 * threads))]
        for k in range(layers):
            csc = window.pop(0).result()
            ahead = k + len(window) + 1
            if ahead < layers:
                window.append(pool.submit(sorted_columns, weights.layer(ahead)))
            yield csc


def transposed_layer(w: sp.spmatrix, in_map: np.ndarray | None, n_in: int):
    """Columns of one layer as padded (index, value) lists, de-duplicated.

    in_map: for every original input neuron, its index in the (merged) input features, or
    None for the identity. Returns (cidx int32[U*KW], cval float32[U*KW], KW, umap int32[N])
    with umap[j] = distinct column of output neuron j. Entries stay in ascending ORIGINAL
    input order, one per original edge, and are only re-pointed at the merged inputs (never
    summed): the kernel then adds exactly the reference's terms in the reference's order, so
    its results are bit-identical to the CPU reference's, the merged network's too.
    """
    csc = w if sp.isspmatrix_csc(w) and w.has_sorted_indices else sorted_columns(w)
    n = csc.shape[1]
    if in_map is not None:
        csc = sp.csc_matrix((csc.data, in_map[csc.indices], csc.indptr), shape=(n_in, n))
    counts = np.diff(csc.indptr)
    kmax = int(counts.max()) if counts.size else 0
    kw = pad_width(max(kmax, 1))
    idx = np.zeros((n, kw), dtype=np.int32)
    val = np.zeros((n, kw), dtype=np.float32)
    if kmax == int(counts.min()):
        idx[:, :kmax] = csc.indices.reshape(n, kmax)
        val[:, :kmax] = csc.data.reshape(n, kmax)
    else:
        pos = np.arange(csc.nnz) - np.repeat(csc.indptr[:-1], counts)
        cols = np.repeat(np.arange(n), counts)
        idx[cols, pos] = csc.indices
        val[cols, pos] = csc.data
    first, umap = distinct_rows(np.concatenate([idx, val.view(np.int32)], axis=1))
    return (
        np.ascontiguousarray(idx[first]).ravel(),
        np.ascontiguousarray(val[first]).ravel(),
        kw,
        umap.astype(np.int32).ravel(),
    )


def keeps_saturated(cval: np.ndarray, kw: int, bias: np.float32) -> bool:
    """Whether the layer maps a row that is 32 at every input to one that is 32 at every
    output, computed as the kernel does it (column_sum: 32 x w rounded, then added in the
    column's order, rounded; then bias, ReLU, clip in float32), so the answer is exact for
    the kernel, not an estimate. On the challenge's layers every column's 32 weights of
    1/16 sum to 2: 64 + b is clipped to 32, always."""
    vals = np.asarray(cval, dtype=np.float32).reshape(-1, kw)
    acc = np.zeros(vals.shape[0], dtype=np.float32)
    for j in range(kw):  # padding is (0, 0.0f): adds an exact 0
        acc = acc + np.float32(challenge.CLIP) * vals[:, j]
    out = np.where(
        acc != 0,
        np.minimum(np.maximum(acc + np.float32(bias), np.float32(0)), np.float32(challenge.CLIP)),
        np.float32(0),
    )
    return bool(vals.shape[0]) and bool(np.all(out == np.float32(challenge.CLIP)))


def carry_start(kept: list[bool]) -> int:
    """The first layer from which every layer keeps saturated rows saturated (len(kept) if the
    last one does not): rows found saturated after layer carry_start - 1 or later are carried."""
    start = len(kept)
    while start and kept[start - 1]:
        start -= 1
    return start


_HASH_MULTIPLIERS = np.random.default_rng(20191).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def distinct_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) of the distinct rows of an int32 matrix, numbered in order of first appearance.

    Rows are grouped by a 64-bit multiplicative hash (7x faster than np.unique on the rows:
    prepare time of the N = 65536 networks), then checked member by member against their
    group's first row; a hash collision (never seen) falls back to the exact row sort.
    """
    key = np.ascontiguousarray(key, dtype=np.int32)
    if key.shape[1] % 2:
        key = np.concatenate([key, np.zeros((key.shape[0], 1), dtype=np.int32)], axis=1)
    words = key.view(np.uint64)
    mult = _HASH_MULTIPLIERS[np.arange(words.shape[1]) % len(_HASH_MULTIPLIERS)]
    with np.errstate(over="ignore"):
        digest = (words * mult).sum(axis=1, dtype=np.uint64)
    _, first, inverse = np.unique(digest, return_index=True, return_inverse=True)
    if not np.array_equal(key[first[inverse]], key):
        _, first, inverse = np.unique(
            key.view(np.dtype((np.void, key.shape[1] * 4))).ravel(), return_index=True, return_inverse=True
        )
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


# ------------------------------------------------------------------------------- the plan


@dataclass
class LayerPlan:
    """One layer as the kernels run it.

    cidx, cval: the distinct columns' padded (input, value) lists (ucols x kw, row-major);
    out_ptr, out_list: output neurons of distinct column u are out_list[out_ptr[u]:out_ptr[u+1]]
    (merged: column u is output u); umap[j]: the distinct column of original output neuron j;
    win, wout: the layer's input and output feature widths; keeps_saturated: an all-32 row
    stays all-32 (keeps_saturated()); fused: runs inside a fused segment (fusable(): merged
    layers in spdnn_fused, full-width ones in spdnn_fused_scatter).
    """

    cidx: np.ndarray
    cval: np.ndarray
    kw: int
    ucols: int
    win: int
    wout: int
    out_ptr: np.ndarray
    out_list: np.ndarray
    umap: np.ndarray
    keeps_saturated: bool
    fused: bool = False


@dataclass
class NetworkPlan:
    """The layers' plans under one variant, with the rules' outcomes.

    fuse_wmax: the widest fused layer (the fused kernel's tile width; 0 without fused layers);
    fuse_ucmax: the most distinct columns of a fused layer (a scatter segment's staging buffers);
    fuse_width: the fusion width the plan was made with;
    carry_from: the first layer from which saturated rows are carried (len(layers): never).
    """

    variant: str
    layers: list[LayerPlan] = field(repr=False)
    fuse_wmax: int = 0
    fuse_ucmax: int = 0
    fuse_width: int = 0
    carry_from: int = 0

    @property
    def max_width(self) -> int:
        """The widest feature row of any layer (the feature buffers' row length)."""
        return max(max(p.win, p.wout) for p in self.layers)

    @property
    def final_map(self) -> np.ndarray | None:
        """Merged: output neuron j of the last layer holds merged feature final_map[j]; dedup: None."""
        return self.layers[-1].umap if self.variant == "merged" else None

    @property
    def widths(self) -> list[int]:
        return [p.wout for p in self.layers]

    @property
    def kws(self) -> list[int]:
        return [p.kw for p in self.layers]

    @property
    def distinct(self) -> list[int]:
        return [p.ucols for p in self.layers]

    @property
    def fused_layers(self) -> int:
        return int(sum(p.fused for p in self.layers))


def plan_layers(weights, layers: int, variant: str) -> list[LayerPlan]:
    """The first `layers` layers transposed and de-duplicated; "merged" also narrows each
    layer's inputs to the previous layer's distinct columns. Nothing is fused yet (fusable())."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    n, bias = weights.neurons, np.float32(weights.bias)
    plan: list[LayerPlan] = []
    in_map, n_in = None, n
    for k, csc in enumerate(columns_ahead(weights, layers)):
        cidx, cval, kw, umap = transposed_layer(csc, in_map, n_in)
        u = len(cidx) // kw
        if variant == "merged":
            out_ptr, out_list, wout = np.arange(u + 1, dtype=np.int32), np.arange(u, dtype=np.int32), u
            in_map, n_in = umap, u
        else:
            order = np.argsort(umap, kind="stable").astype(np.int32)
            out_ptr = np.zeros(u + 1, dtype=np.int32)
            np.cumsum(np.bincount(umap, minlength=u), out=out_ptr[1:])
            out_list, wout = order, n
        plan.append(
            LayerPlan(
                cidx=cidx,
                cval=cval,
                kw=kw,
                ucols=u,
                out_ptr=out_ptr,
                out_list=out_list,
                keeps_saturated=keeps_saturated(cval, kw, bias),
                win=n if k == 0 or variant == "dedup" else plan[-1].wout,
                wout=wout,
                umap=umap,
            )
        )
    return plan


def merging_pays(neurons: int, merged: list[LayerPlan]) -> bool:
    """The variant rule: "merged" when merging narrows the layers' total feature width at least
    2x (true for every challenge network), else "dedup" (a network without duplicate neurons)."""
    return neurons * len(merged) >= 2 * sum(p.wout for p in merged)


def fuse_width_limit(smem_optin: int, variant: str = "merged") -> int:
    """The widest layer whose tile (32 rows; double-buffered when merged, one buffer in a
    full-width scatter segment) fits a block's opt-in shared memory."""
    per_width = SCATTER_TILE_BYTES_PER_WIDTH if variant == "dedup" else FUSE_TILE_BYTES_PER_WIDTH
    return (smem_optin - 64) // per_width


def default_fuse_width(variant: str, smem_optin: int) -> int:
    """The fusion rule's width for a variant: FUSE_WIDTH (merged), FUSE_WIDTH_SCATTER (dedup),
    capped by what one block's shared memory holds."""
    rule = FUSE_WIDTH_SCATTER if variant == "dedup" else FUSE_WIDTH
    return min(rule, fuse_width_limit(smem_optin, variant))


def fuse_bytes(wmax: int, kw: int, stage_weights: bool, variant: str = "merged", ucmax: int = 0) -> int:
    """Dynamic shared memory of a fused segment: the tile's feature buffers (two when merged,
    one in a dedup scatter segment, with the layer's output lists) and, staged, two layers' (index, value) columns (wmax
    columns merged, ucmax distinct ones in a scatter segment) in whole 16-byte copies."""
    if variant == "dedup":  # the tile, then the layer's output lists (wmax + ucmax + 1 ints, 16-byte rounded)
        nbytes, cols = SCATTER_TILE_BYTES_PER_WIDTH * wmax + 4 * ((wmax + ucmax + 4) // 4 * 4), ucmax
    else:
        nbytes, cols = FUSE_TILE_BYTES_PER_WIDTH * wmax, wmax
    if stage_weights:
        nbytes += 2 * 2 * 4 * (-(-cols * kw // 4) * 4)
    return nbytes


def fusable(
    plan: list[LayerPlan],
    variant: str,
    fuse_width: int,
    smem_optin: int,
    stage_weights: bool,
    warps: int = 16,
) -> tuple[int, int]:
    """The fusion rule: marks the layers that run in fused segments and returns the widest
    (fuse_wmax, 0 if none) with the most distinct columns of a fused layer (fuse_ucmax). A
    layer fuses when both its widths are at most fuse_width and, full-width (dedup), its
    distinct columns fit the warps' registers (warps x SCATTER_REGS), and the segment's shared
    memory at the widest such layer fits one block (fuse_bytes <= smem_optin - 1024)."""
    for p in plan:
        p.fused = max(p.win, p.wout) <= fuse_width
        if variant == "dedup":
            p.fused = p.fused and p.ucols <= warps * SCATTER_REGS
    wmax = max([max(p.win, p.wout) for p in plan if p.fused], default=0)
    ucmax = max([p.ucols for p in plan if p.fused], default=0)
    for p in plan:  # and the segment's shared memory fits one block
        p.fused = p.fused and fuse_bytes(wmax, p.kw, stage_weights, variant, ucmax) <= smem_optin - 1024
    wmax = max([max(p.win, p.wout) for p in plan if p.fused], default=0)
    ucmax = max([p.ucols for p in plan if p.fused], default=0)
    return wmax, ucmax


def plan_network(
    weights,
    layers: int,
    variant: str = "auto",
    fuse_width: int | None = 0,
    smem_optin: int = 0,
    stage_weights: bool = True,
    carry_saturated: bool = True,
    warps: int = 16,
) -> NetworkPlan:
    """The plan the engine uploads: the variant ("auto": merging_pays), the fused layers
    (fusable, for a device with smem_optin bytes of shared memory per block and blocks of
    `warps` warps; fuse_width None: the variant's rule, default_fuse_width) and carry_from
    (carry_start of the layers' keeps_saturated; len(layers) when carry_saturated is off)."""
    if variant == "auto":
        plan = plan_layers(weights, layers, "merged")
        chosen = "merged" if merging_pays(weights.neurons, plan) else "dedup"
        if chosen == "dedup":
            plan = plan_layers(weights, layers, "dedup")
    else:
        chosen = variant
        plan = plan_layers(weights, layers, chosen)
    carry_from = carry_start([p.keeps_saturated for p in plan]) if carry_saturated else layers
    width = default_fuse_width(chosen, smem_optin) if fuse_width is None else fuse_width
    wmax, ucmax = fusable(plan, chosen, width, smem_optin, stage_weights, warps)
    return NetworkPlan(
        variant=chosen, layers=plan, fuse_wmax=wmax, fuse_ucmax=ucmax, fuse_width=width, carry_from=carry_from
    )
