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

General layered networks (GeneralNetwork: any widths, any nonzeros per column, a bias per
neuron, an Activation per layer; SNICIT's pruned MNIST networks) get the same plan, run by the
kernels' LAYERED build. A distinct column is then its (index, value) pairs AND its bias (the
activation is the layer's, the same for all its columns), so two neurons are merged only if
their outputs are identical. Two rules keep the row bookkeeping exact: dead rows (all zero) are
dropped only after layers from which every layer maps a zero row to a zero row (zero_from;
before that, a bias on every output can revive them, so every row is kept: keep_rows), and
saturated rows are carried only through layers whose replay on a row at the previous layer's
clamp top gives the row at this layer's top (keeps_saturated with the layer's biases).
Nothing here imports pycuda: the plan is tested on the CPU (tests/test_cuda.py, test_model.py,
test_cuda_layered.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .. import challenge

VARIANTS = ("dedup", "merged")
# A layer's mode bits in the LAYERED kernels (spdnn_layer.cu ACT_*): the bias on every output,
# then a clamp, and every row kept live after the layer.
ACT_ALL, ACT_CLAMP, ACT_KEEP = 1, 2, 4
# One LayerAct per layer (spdnn_layer.cu): where its column biases start, its mode and clamp.
LACT_DTYPE = np.dtype([("boff", "<i4"), ("mode", "<i4"), ("lo", "<f4"), ("hi", "<f4")])
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


@dataclass(frozen=True)
class Activation:
    """What a layer does after its product Z = Y W, as the kernels do it: z = Z + b on every
    output (everywhere) or only where Z != 0, the rest 0 (the challenge); then min(max(z, lo),
    hi) (clamp) or nothing (the identity). Each step rounds once in float32."""

    everywhere: bool = False
    clamp: tuple[float, float] | None = (0.0, challenge.CLIP)

    def mode(self, keep: bool = False) -> int:
        """The kernels' mode bits (ACT_ALL, ACT_CLAMP; ACT_KEEP when every row stays live)."""
        return (ACT_ALL if self.everywhere else 0) | (ACT_CLAMP if self.clamp else 0) | (ACT_KEEP if keep else 0)

    @property
    def bounds(self) -> tuple[np.float32, np.float32]:
        """(lo, hi) in float32, as the kernels get them (the identity: -inf, inf, unused)."""
        lo, hi = self.clamp if self.clamp is not None else (-np.inf, np.inf)
        return np.float32(lo), np.float32(hi)

    @property
    def level(self) -> float | None:
        """The saturation level, the clamp's finite top (a row at it everywhere may be carried),
        or None (the identity, or no top)."""
        hi = self.bounds[1]
        return float(hi) if self.clamp is not None and np.isfinite(hi) else None

    def apply(self, acc: np.ndarray, bias) -> np.ndarray:
        """The kernels' activate in numpy float32: the products' sums `acc` and biases to outputs."""
        acc = np.asarray(acc, dtype=np.float32)
        z = acc + np.asarray(bias, dtype=np.float32)
        if self.clamp is not None:
            lo, hi = self.bounds
            z = np.minimum(np.maximum(z, lo), hi)
        if not self.everywhere:
            z = np.where(acc != 0, z, np.float32(0))
        return np.asarray(z, dtype=np.float32)


CHALLENGE_ACTIVATION = Activation()


def layered_activation(code: int) -> Activation:
    """The Activation of a spdnn.dag activation code: identity, relu, relu_clip ([0, 32]) and
    relu_clip1 ([0, 1]), the bias on every output. sigmoid and tanh are refused: the GPU's expf /
    tanhf are not numpy's to the last bit, so the results could not be exact."""
    from ..dag.network import ACTIVATIONS, IDENTITY, RELU, RELU_CLIP, RELU_CLIP1

    clamps = {IDENTITY: None, RELU: (0.0, np.inf), RELU_CLIP: (0.0, challenge.CLIP), RELU_CLIP1: (0.0, 1.0)}
    if code not in clamps:
        name = ACTIVATIONS[code] if 0 <= code < len(ACTIVATIONS) else str(code)
        raise ValueError(
            f"activation {name} cannot run exactly on the cuda engine (its GPU math functions are not "
            "numpy's to the last bit); it runs identity, relu, relu_clip and relu_clip1"
        )
    return Activation(everywhere=True, clamp=clamps[code])


@dataclass
class GeneralNetwork:
    """A layered network for the plan beside the challenge's Weights (same interface: neurons,
    n_layers, layer(k)): layer k maps width_k to width_{k+1} neurons through matrices[k] (CSR,
    width_k x width_{k+1}, float32, finite, no duplicate entries), then adds biases[k] (float32,
    one per output neuron) and applies activations[k]."""

    matrices: list[sp.csr_matrix]
    biases: list[np.ndarray]
    activations: list[Activation]
    name: str = "layered"

    def __post_init__(self) -> None:
        if not (len(self.matrices) == len(self.biases) == len(self.activations)) or not self.matrices:
            raise ValueError("a layered network needs as many matrices, biases and activations, at least one")
        for k, (w, b) in enumerate(zip(self.matrices, self.biases)):
            if not (sp.isspmatrix_csr(w) and w.dtype == np.float32):
                raise ValueError(f"layer {k}: weights must be a float32 CSR matrix (from_layered converts)")
            if b.dtype != np.float32 or b.shape != (w.shape[1],):
                raise ValueError(f"layer {k}: biases must be float32[{w.shape[1]}], not {b.dtype}{list(b.shape)}")
            given = self.matrices[k - 1].shape[1] if k else w.shape[0]
            if w.shape[0] != given:
                raise ValueError(f"layer {k} takes {w.shape[0]} neurons, layer {k - 1} gives {given}")
            if not (np.all(np.isfinite(w.data)) and np.all(np.isfinite(b))):
                raise ValueError(f"layer {k}: weights and biases must be finite")
            canonical = w.copy()
            canonical.sum_duplicates()
            if canonical.nnz != w.nnz:
                # the CPU engine and the plan would add a duplicate pair's terms in orders of their own
                raise ValueError(f"layer {k}: {w.nnz - canonical.nnz} duplicate weight entries (sum them first)")

    @property
    def neurons(self) -> int:
        """The input width (the inputs' columns), as Weights.neurons is for the challenge."""
        return int(self.matrices[0].shape[0])

    @property
    def n_layers(self) -> int:
        return len(self.matrices)

    @property
    def widths(self) -> list[int]:
        return [self.neurons] + [int(w.shape[1]) for w in self.matrices]

    def layer(self, k: int) -> sp.csr_matrix:
        return self.matrices[k]

    @classmethod
    def from_layered(cls, net) -> GeneralNetwork:
        """A spdnn.dag.layered.LayeredNetwork (weights, biases, activation codes), converted to
        float32 as its CPU engine converts it; an activation with no exact kernel is an error."""
        acts = []
        for k, code in enumerate(net.activations):
            try:
                acts.append(layered_activation(int(code)))
            except ValueError as err:
                raise ValueError(f"{net.name} layer {k}: {err}") from None
        return cls(
            [sp.csr_matrix(w, dtype=np.float32) for w in net.weights],
            [np.asarray(b, dtype=np.float32) for b in net.biases],
            acts,
            name=net.name,
        )

    @classmethod
    def from_weights(cls, weights, layers: int) -> GeneralNetwork:
        """The challenge's network in this form (its bias on every neuron, on the nonzeros only,
        clip to [0, 32]): the same results through the LAYERED kernels (tests)."""
        mats = [sp.csr_matrix(weights.layer(k), dtype=np.float32) for k in range(layers)]
        bias = np.float32(weights.bias)
        return cls(mats, [np.full(m.shape[1], bias) for m in mats], [CHALLENGE_ACTIVATION] * layers, name="challenge")


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
    return transposed_biased_layer(w, in_map, n_in, None)[:4]


def transposed_biased_layer(w: sp.spmatrix, in_map: np.ndarray | None, n_in: int, bias: np.ndarray | None):
    """transposed_layer with a bias per output neuron (None: one bias for all, the challenge):
    columns are distinct by their pairs and their bias, so neurons share a distinct column only
    if their outputs are equal. Returns (cidx, cval, KW, umap, cbias float32[U] or None)."""
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
    parts = [idx, val.view(np.int32)]
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        parts.append(bias.view(np.int32)[:, None])
    first, umap = distinct_rows(np.concatenate(parts, axis=1))
    return (
        np.ascontiguousarray(idx[first]).ravel(),
        np.ascontiguousarray(val[first]).ravel(),
        kw,
        umap.astype(np.int32).ravel(),
        None if bias is None else bias[first],
    )


def keeps_saturated(
    cval: np.ndarray,
    kw: int,
    bias,
    act: Activation = CHALLENGE_ACTIVATION,
    level_in: float | None = challenge.CLIP,
) -> bool:
    """Whether the layer maps a row that is `level_in` at every input to one that is act.level
    (the clamp's top) at every output, computed as the kernel does it (column_sum: level x w
    rounded, then added in the column's order, rounded; then act.apply with the bias, a scalar
    or one per distinct column, in float32), so the answer is exact for the kernel, not an
    estimate. On the challenge's layers every column's 32 weights of 1/16 sum to 2: 64 + b is
    clipped to 32, always. No level (the identity, or no finite top) keeps nothing."""
    level_out = act.level
    if level_in is None or level_out is None:
        return False
    vals = np.asarray(cval, dtype=np.float32).reshape(-1, kw)
    acc = np.zeros(vals.shape[0], dtype=np.float32)
    for j in range(kw):  # padding is (0, 0.0f): adds an exact 0
        acc = acc + np.float32(level_in) * vals[:, j]
    out = act.apply(acc, bias)
    return bool(vals.shape[0]) and bool(np.all(out == np.float32(level_out)))


def keeps_zero(cbias, act: Activation) -> bool:
    """Whether the layer maps an all-zero row to an all-zero row: every product is then +0
    exactly, so the outputs are act.apply(0, b). Always with the bias on the nonzeros only (the
    challenge); with a bias on every output, only where no bias survives the activation."""
    return bool(np.all(act.apply(np.zeros(np.shape(cbias), np.float32), cbias) == 0))


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
    General layered networks (GeneralNetwork) also have: cbias, the distinct columns' biases
    (None: the challenge's one bias); act, the layer's Activation; keeps_zero, a zero row stays
    zero (keeps_zero()); keep_rows, every row stays live after the layer (plan_network: a zero row
    may come back to life in a later layer), so no row is dropped there.
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
    cbias: np.ndarray | None = None
    act: Activation = CHALLENGE_ACTIVATION
    keeps_zero: bool = True
    keep_rows: bool = False


@dataclass
class NetworkPlan:
    """The layers' plans under one variant, with the rules' outcomes.

    fuse_wmax: the widest fused layer (the fused kernel's tile width; 0 without fused layers);
    fuse_ucmax: the most distinct columns of a fused layer (a scatter segment's staging buffers);
    fuse_width: the fusion width the plan was made with;
    carry_from: the first layer from which saturated rows are carried (len(layers): never);
    layered: a GeneralNetwork's plan (the LAYERED kernels); zero_from: the first layer from which
    every layer keeps zero rows zero (rows dead after layer zero_from - 1 or later are dropped).
    """

    variant: str
    layers: list[LayerPlan] = field(repr=False)
    fuse_wmax: int = 0
    fuse_ucmax: int = 0
    fuse_width: int = 0
    carry_from: int = 0
    layered: bool = False
    zero_from: int = 0

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
    def out_width(self) -> int:
        """The last layer's original output width (what the engine returns per row)."""
        return len(self.layers[-1].umap)

    @property
    def sat_level(self) -> float:
        """The value of a carried (saturated) row at the end: the last layer's clamp top."""
        level = self.layers[-1].act.level
        return challenge.CLIP if level is None else level

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
    layer's inputs to the previous layer's distinct columns. Nothing is fused yet (fusable()).
    weights: the challenge's Weights (one width, one bias) or a GeneralNetwork."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    general = isinstance(weights, GeneralNetwork)
    plan: list[LayerPlan] = []
    in_map, n_in = None, weights.neurons
    for k, csc in enumerate(columns_ahead(weights, layers)):
        win, n_out = n_in, csc.shape[1]
        if general:
            act = weights.activations[k]
            # the input level of layer 0 does not matter: rows are found saturated after a layer
            level_in = (weights.activations[k - 1] if k else act).level
            cidx, cval, kw, umap, cbias = transposed_biased_layer(csc, in_map, n_in, weights.biases[k])
            bias = cbias
        else:
            act, level_in, cbias = CHALLENGE_ACTIVATION, challenge.CLIP, None
            cidx, cval, kw, umap = transposed_layer(csc, in_map, n_in)
            bias = np.float32(weights.bias)
        u = len(cidx) // kw
        if variant == "merged":
            out_ptr, out_list, wout = np.arange(u + 1, dtype=np.int32), np.arange(u, dtype=np.int32), u
            in_map, n_in = umap, u
        else:
            order = np.argsort(umap, kind="stable").astype(np.int32)
            out_ptr = np.zeros(u + 1, dtype=np.int32)
            np.cumsum(np.bincount(umap, minlength=u), out=out_ptr[1:])
            out_list, wout, n_in = order, n_out, n_out
        plan.append(
            LayerPlan(
                cidx=cidx,
                cval=cval,
                kw=kw,
                ucols=u,
                out_ptr=out_ptr,
                out_list=out_list,
                keeps_saturated=keeps_saturated(cval, kw, bias, act, level_in),
                win=win,
                wout=wout,
                umap=umap,
                cbias=cbias,
                act=act,
                keeps_zero=True if cbias is None else keeps_zero(cbias, act),
            )
        )
    return plan


def merging_pays(merged: list[LayerPlan]) -> bool:
    """The variant rule: "merged" when merging narrows the layers' total feature width at least
    2x (true for every challenge network), else "dedup" (a network without duplicate neurons)."""
    return sum(len(p.umap) for p in merged) >= 2 * sum(p.wout for p in merged)


def layer_acts(plan: list[LayerPlan]) -> tuple[np.ndarray, np.ndarray]:
    """(every layer's column biases one after another, float32; one LayerAct per layer,
    LACT_DTYPE: where its biases start, its mode bits with ACT_KEEP where keep_rows, its clamp)
    for the LAYERED kernels (a plan of a GeneralNetwork: every layer has cbias)."""
    if any(p.cbias is None for p in plan):
        raise ValueError("layer_acts needs a GeneralNetwork's plan (per-column biases)")
    boff = np.concatenate([[0], np.cumsum([p.ucols for p in plan])]).astype(np.int32)
    lact = np.zeros(len(plan), dtype=LACT_DTYPE)
    for k, p in enumerate(plan):
        lo, hi = p.act.bounds
        lact[k] = (boff[k], p.act.mode(p.keep_rows), lo, hi)
    cbias = np.concatenate([p.cbias for p in plan]).astype(np.float32) if plan else np.zeros(0, np.float32)
    return cbias, lact


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
    `warps` warps; fuse_width None: the variant's rule, default_fuse_width), carry_from
    (carry_start of the layers' keeps_saturated; len(layers) when carry_saturated is off) and,
    for a GeneralNetwork, zero_from (carry_start of keeps_zero) with keep_rows on the layers
    after which a zero row may still come back (k < zero_from - 1)."""
    if variant == "auto":
        plan = plan_layers(weights, layers, "merged")
        chosen = "merged" if merging_pays(plan) else "dedup"
        if chosen == "dedup":
            plan = plan_layers(weights, layers, "dedup")
    else:
        chosen = variant
        plan = plan_layers(weights, layers, chosen)
    carry_from = carry_start([p.keeps_saturated for p in plan]) if carry_saturated else layers
    zero_from = carry_start([p.keeps_zero for p in plan])
    for k, p in enumerate(plan):
        p.keep_rows = k < zero_from - 1
    width = default_fuse_width(chosen, smem_optin) if fuse_width is None else fuse_width
    wmax, ucmax = fusable(plan, chosen, width, smem_optin, stage_weights, warps)
    return NetworkPlan(
        variant=chosen,
        layers=plan,
        fuse_wmax=wmax,
        fuse_ucmax=ucmax,
        fuse_width=width,
        carry_from=carry_from,
        layered=isinstance(weights, GeneralNetwork),
        zero_from=zero_from,
    )
