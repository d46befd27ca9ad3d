"""The network side of the model: layer shapes per feature-width variant and the survival profile.

Shapes follow the RadiX-Net construction of spdnn.generate (checked against the cuda engine's
layer plan in tests/test_model.py): P = N/16 positions, G = log2(P) layers per group; every
layer has P distinct columns (P/2 at the last layer of a group, stride P/2), each with 32
nonzeros. Variant 'dedup': features N wide, KW = 32, each distinct column written to N/ucols
outputs. Variant 'merged': features ucols wide, KW = 32 on every layer (the engine keeps all 32
original terms of a column, re-pointed at the merged inputs, never summed: bit-identical sums).

The survival profile gives, per layer, the rows alive and how many of them are saturated (32 at
every neuron): the engine carries those instead of computing them (spdnn.model.policy), from the
layer its plan says (carry_from: the engine's keeps_saturated / carry_start on the model's layers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import challenge
from ..engines.layer_plan import VARIANTS, carry_start, keeps_saturated

PROFILES = Path(__file__).with_name("profiles.json")
# The stored survival profiles (profiles.json): "current", today's generator (after issue 15's input
# calibration), CPU reference, 60000 distinct inputs of seed 1 (benchmarks/model_profiles.py
# --current), the default for predictions; "measured", the generator of commit 96be6bd, active rows
# measured by the cuda engine on 2026-11-25 (6000 distinct inputs x 10), with the CPU reference's
# saturated rows: the networks of the 2026-11 H100 / H200 validation measurements.
PROFILE_SETS = ("current", "measured")
DEFAULT_PROFILE_SET = "current"


@dataclass(frozen=True)
class LayerShapes:
    """Per layer (arrays of length L): input width, output width, distinct columns, padded column length."""

    win: np.ndarray
    wout: np.ndarray
    ucols: np.ndarray
    kw: np.ndarray


def layer_shapes(neurons: int, layers: int, variant: str) -> LayerShapes:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    p = neurons // 16
    g = max(1, p.bit_length() - 1)
    k = np.arange(layers)
    ucols = np.where(k % g == g - 1, p // 2, p).astype(np.int64) if g > 1 else np.full(layers, p, np.int64)
    if variant == "dedup":
        win = np.full(layers, neurons, np.int64)
        wout = win.copy()
        kw = np.full(layers, 32, np.int64)
    else:
        wout = ucols.copy()
        win = np.concatenate([[neurons], ucols[:-1]]).astype(np.int64)
        # the engine replays every original edge (bit-identical sums), so merged columns keep 32 terms
        kw = np.full(layers, 32, np.int64)
    return LayerShapes(win=win, wout=wout, ucols=ucols, kw=kw)


def carry_from(neurons: int, layers: int) -> int:
    """The first layer from which the engine carries saturated rows on the model's network: its
    rule (carry_start of keeps_saturated, exact float32 arithmetic) on the model's columns, 32
    weights of 1/16 with the challenge's bias for N (every layer alike: 64 + b clips to 32)."""
    column = np.full(challenge.NNZ_PER_ROW, challenge.WEIGHT, dtype=np.float32)
    kept = keeps_saturated(column, challenge.NNZ_PER_ROW, np.float32(challenge.bias(neurons)))
    return carry_start([kept] * layers)


def survival(layers: Iterable[Any], bias: float, inputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(rows alive after each layer, how many of them are saturated) for the CPU reference's
    arithmetic (spdnn.engines.cpu.layer_step, saturated) on `inputs` (CSR). Saturated rows are
    carried as the reference carries them (one all-32 row runs through each layer; while it comes
    out all 32 they are not computed), so deep networks cost little more than their first layers;
    the counts are the plain definition's either way."""
    import scipy.sparse as sp

    from ..engines.cpu import layer_step, saturated

    y = sp.csr_matrix(inputs, dtype=np.float32, copy=True)
    full = sp.csr_matrix(np.full((1, y.shape[1]), challenge.CLIP, dtype=np.float32))
    b = np.float32(bias)
    carried = 0
    active: list[int] = []
    sat: list[int] = []
    for w in layers:
        w = sp.csr_matrix(w, dtype=np.float32)
        y = layer_step(y, w, b)
        if carried:
            out = layer_step(full, w, b)
            if saturated(out).size == 0:  # this layer does not keep them saturated: they rejoin
                if out.nnz:
                    y = sp.vstack([y, out[np.zeros(carried, dtype=np.int64)]], format="csr")
                carried = 0
        keep = np.flatnonzero(np.diff(y.indptr))
        now = saturated(y)
        carried += now.size
        y = y[np.setdiff1d(keep, now, assume_unique=True)]
        active.append(y.shape[0] + carried)
        sat.append(carried)
    return np.asarray(active, np.int64), np.asarray(sat, np.int64)


# One parallel survival call, set before the workers fork: they inherit it (as spdnn.engines.cpu does).
_JOB: dict = {}


def _survival_part(part: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(part, _JOB["inputs"].shape[0], _JOB["parts"])
    return survival(_JOB["layers"](), _JOB["bias"], _JOB["inputs"][rows])


def survival_parallel(
    layers: Callable[[], Iterable[Any]], bias: float, inputs: Any, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """survival() with the rows split over `workers` forked processes (rows are independent, so
    the counts add up); `layers` returns a fresh iterable of the layers for each worker."""
    from ..engines.cpu import can_fork, fork_pool

    workers = max(1, min(workers, inputs.shape[0]))
    if workers == 1 or not can_fork():
        return survival(layers(), bias, inputs)
    _JOB.update(layers=layers, bias=bias, inputs=inputs, parts=workers)
    try:
        with fork_pool(workers) as pool:
            parts = list(pool.map(_survival_part, range(workers)))
    finally:
        _JOB.clear()
    return np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0)


@cache
def _profiles() -> dict:
    return json.loads(PROFILES.read_text())


@dataclass(frozen=True)
class NetworkProfile:
    """N, L, the number of inputs, the rows still active after each layer (length L) and how many
    of them are saturated (all 32; None: not known, taken as none, so nothing is carried)."""

    neurons: int
    layers: int
    inputs: int
    active: np.ndarray = field(repr=False)
    source: str = ""
    saturated: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if len(self.active) != self.layers:
            raise ValueError(f"active rows: {len(self.active)} values for {self.layers} layers")
        if self.saturated is not None:
            if len(self.saturated) != self.layers:
                raise ValueError(f"saturated rows: {len(self.saturated)} values for {self.layers} layers")
            if np.any(self.saturated > self.active):
                raise ValueError("saturated rows: more than the active rows at some layer")

    @property
    def carry_from(self) -> int:
        """The first layer from which the engine carries saturated rows (carry_from())."""
        return carry_from(self.neurons, self.layers)

    @classmethod
    def from_active(cls, neurons: int, active, inputs: int, source: str = "given", saturated=None) -> NetworkProfile:
        a = np.asarray(active, dtype=np.float64)
        s = None if saturated is None else np.asarray(saturated, dtype=np.float64)
        return cls(neurons, len(a), int(inputs), a, source, s)

    @classmethod
    def stored(
        cls, neurons: int, layers: int, inputs: int = 60000, profile_set: str = DEFAULT_PROFILE_SET
    ) -> NetworkProfile:
        """A stored survival profile of the synthetic network (profiles.json, set `profile_set`:
        PROFILE_SETS), scaled to `inputs`, with its saturated rows.

        N without a stored profile takes the nearest stored N of the set (log scale); layers past
        the stored ones keep the last value (the profiles are flat by then: rows that survive ~20
        layers survive, and all of them are saturated).
        """
        if profile_set not in PROFILE_SETS:
            raise ValueError(f"profile set must be one of {PROFILE_SETS}, not {profile_set!r}")
        data = _profiles()
        if profile_set == "current":
            if str(neurons) not in data["current"]["profiles"] and str(neurons) in data["profiles"]:
                # today's set lacks this N, the measured one has it: that, rather than another N
                prof = cls.stored(neurons, layers, inputs, "measured")
                return replace(prof, source=prof.source + " (no current profile of this N)")
            data = data["current"]
        have = sorted(int(n) for n in data["profiles"])
        near = min(have, key=lambda n: abs(np.log2(n) - np.log2(neurons)))

        def fit(values) -> np.ndarray:
            a = np.asarray(values, dtype=np.float64)
            a = a[:layers] if layers <= len(a) else np.concatenate([a, np.full(layers - len(a), a[-1])])
            return a * inputs / data["inputs"]

        sat = data.get("saturated", {}).get(str(near))
        src = f"profiles.json {profile_set} N={near}" + ("" if near == neurons else f" (nearest to {neurons})")
        return cls(neurons, layers, inputs, fit(data["profiles"][str(near)]), src, None if sat is None else fit(sat))

    @classmethod
    def from_reference(
        cls, neurons: int, layers: int, inputs: int, seed: int = 1, sample: int = 2000, workers: int = 1
    ) -> NetworkProfile:
        """Run the CPU reference (survival()) on `sample` generated inputs of the synthetic network
        (spdnn.generate, `seed`) and scale its active and saturated counts to `inputs`."""
        from ..generate import generate_inputs, generate_layers

        y = generate_inputs(neurons, min(sample, inputs), seed)
        rows = y.shape[0]
        act, sat = survival_parallel(
            lambda: generate_layers(neurons, layers, seed), challenge.bias(neurons), y, workers
        )
        return cls(
            neurons,
            layers,
            inputs,
            np.asarray(act, float) * inputs / rows,
            f"CPU reference on {rows} generated inputs (seed {seed}), scaled",
            np.asarray(sat, float) * inputs / rows,
        )

    def shapes(self, variant: str) -> LayerShapes:
        return layer_shapes(self.neurons, self.layers, variant)
