"""The network side of the model: layer shapes per feature-width variant and the survival profile.

Shapes follow the RadiX-Net construction of spdnn.generate (checked against the cuda engine's
layer plan in tests/test_model.py): P = N/16 positions, G = log2(P) layers per group; every
layer has P distinct columns (P/2 at the last layer of a group, stride P/2), each with 32
nonzeros. Variant 'dedup': features N wide, KW = 32, each distinct column written to N/ucols
outputs. Variant 'merged': features ucols wide, KW = 32 on every layer (the engine keeps all 32
original terms of a column, re-pointed at the merged inputs, never summed: bit-identical sums).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from ..engines.layer_plan import VARIANTS

PROFILES = Path(__file__).with_name("profiles.json")


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


@cache
def _profiles() -> dict:
    return json.loads(PROFILES.read_text())


@dataclass(frozen=True)
class NetworkProfile:
    """N, L, the number of inputs, and the rows still active after each layer (length L)."""

    neurons: int
    layers: int
    inputs: int
    active: np.ndarray = field(repr=False)
    source: str = ""

    def __post_init__(self):
        if len(self.active) != self.layers:
            raise ValueError(f"active rows: {len(self.active)} values for {self.layers} layers")

    @classmethod
    def from_active(cls, neurons: int, active, inputs: int, source: str = "given") -> NetworkProfile:
        a = np.asarray(active, dtype=np.float64)
        return cls(neurons, len(a), int(inputs), a, source)

    @classmethod
    def stored(cls, neurons: int, layers: int, inputs: int = 60000) -> NetworkProfile:
        """The measured survival profile of the synthetic network (profiles.json), scaled to `inputs`.

        N without a stored profile takes the nearest stored N (log scale); layers past the stored
        ones keep the last value (the profiles are flat by then: rows that survive ~20 layers survive).
        """
        data = _profiles()
        have = sorted(int(n) for n in data["profiles"])
        near = min(have, key=lambda n: abs(np.log2(n) - np.log2(neurons)))
        a = np.asarray(data["profiles"][str(near)], dtype=np.float64)
        if layers <= len(a):
            a = a[:layers]
        else:
            a = np.concatenate([a, np.full(layers - len(a), a[-1])])
        a = a * inputs / data["inputs"]
        src = f"profiles.json N={near}" + ("" if near == neurons else f" (nearest to {neurons})")
        return cls(neurons, layers, inputs, a, src)

    @classmethod
    def from_reference(
        cls, neurons: int, layers: int, inputs: int, seed: int = 1, sample: int = 2000
    ) -> NetworkProfile:
        """Run the CPU reference on `sample` generated inputs and scale the active counts to `inputs`."""
        import scipy.sparse as sp

        from ..challenge import bias
        from ..engines.cpu import layer_step
        from ..generate import generate_inputs, generate_layers

        y = sp.csr_matrix(generate_inputs(neurons, min(sample, inputs), seed), dtype=np.float32)
        rows = y.shape[0]
        act = []
        for w in generate_layers(neurons, layers, seed):
            y = layer_step(y, sp.csr_matrix(w, dtype=np.float32), bias(neurons))
            act.append(int(np.count_nonzero(np.diff(y.indptr))))
        return cls(
            neurons,
            layers,
            inputs,
            np.asarray(act, float) * inputs / rows,
            f"CPU reference on {rows} generated inputs (seed {seed}), scaled",
        )

    def shapes(self, variant: str) -> LayerShapes:
        return layer_shapes(self.neurons, self.layers, variant)
