"""Comparing DAG results: categories exactly, values within float32 rounding, levels exactly.

Categories of an input vector: the argmax over the output nodes (a classifier's answer),
and, as in the challenge, whether any output is nonzero. Accumulation order differs
between engines (BLAS, per-group sparse products, lanes and shuffles on the GPU), so
values agree to float32 rounding, not bit for bit: |a - ref| <= rtol * (|ref| + scale),
scale the RMS of the reference outputs. An argmax may differ only where the reference's
two best outputs lie within that tolerance (a tie at float32 precision): such rows are
counted and reported, never silently accepted beyond that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..validate import ValidationError
from .levels import levels_by_walk
from .network import DagNetwork, DagSpec

RTOL = 1e-4


class DagValidationError(ValidationError):
    """Two engines disagree beyond float32 rounding, or levels differ."""


@dataclass
class Comparison:
    max_abs_error: float
    max_rel_error: float
    scale: float
    argmax_mismatches: int
    argmax_ties: int
    nonzero_mismatches: int
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def compare_outputs(out: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> Comparison:
    """Compare an engine's outputs with the reference's (both (batch, outputs))."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise DagValidationError(f"output shapes differ: {out.shape} vs {ref.shape}")
    if not np.all(np.isfinite(out)):
        return Comparison(float("nan"), float("nan"), 0.0, -1, 0, -1, False)
    scale = float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0
    tol = rtol * (np.abs(ref) + scale)
    err = np.abs(out - ref)
    ok_values = bool(np.all(err <= tol))
    mism = ties = 0
    nz_mism = 0
    if ref.size and ref.shape[1]:
        a, b = out.argmax(axis=1), ref.argmax(axis=1)
        bad = np.flatnonzero(a != b)
        rows = np.arange(ref.shape[0])
        gap = ref[rows[bad], b[bad]] - ref[rows[bad], a[bad]]
        is_tie = gap <= tol[rows[bad], b[bad]] + tol[rows[bad], a[bad]]
        ties = int(is_tie.sum())
        mism = int(bad.size - ties)
        # challenge-style categories: any output above rounding noise vs exactly zero rows
        nz_out = np.any(np.abs(out) > rtol * scale, axis=1)
        nz_ref = np.any(np.abs(ref) > rtol * scale, axis=1)
        nz_mism = int(np.count_nonzero(nz_out != nz_ref))
    rel = float((err / np.maximum(np.abs(ref) + scale, 1e-30)).max()) if ref.size else 0.0
    return Comparison(
        float(err.max()) if err.size else 0.0, rel, scale, mism, ties, nz_mism, ok_values and mism == 0 and nz_mism == 0
    )


def check_levels(spec: DagSpec, net: DagNetwork) -> int:
    """Check the levelised network's levels against a per-node walk of the spec; returns the level count."""
    walk = levels_by_walk(spec)
    got = dict(zip(net.ids.tolist(), net.level.tolist()))
    bad = [i for i in walk if walk[i] != got.get(i)]
    if bad:
        shown = ", ".join(f"node {i}: {got.get(i)} vs {walk[i]}" for i in bad[:8])
        raise DagValidationError(f"levels differ from the per-node walk: {shown}")
    return net.n_levels
