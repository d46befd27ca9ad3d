"""Hardware design-space exploration: the grid equals the scalar model, distinct GPUs, Pareto front, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spdnn.model import Dataflow, NetworkProfile, load_hardware
from spdnn.model.cost import predict
from spdnn.model.hwdse import AXES, evaluate_hw, grid_axes, pareto, proxy, scaled


def _axis_point(hw):
    return {
        "sms": [hw.sms],
        "smem_per_sm_kb": [hw.smem_per_sm / 1024],
        "l2_mb": [hw.l2_bytes / 2**20],
        "hbm_tbs": [hw.hbm_bandwidth / 1e12],
        "clock_ghz": [hw.clock_hz / 1e9],
    }


@pytest.mark.parametrize(
    "df", [Dataflow(), Dataflow(dataflow="fused", warps=16, fuse=8, check_every=8), Dataflow(variant="dedup", warps=32)]
)
def test_grid_equals_scalar_model(df):
    """Every grid point is the scalar model on the scaled GPU: checked at the base preset's own
    figures and at a few other points."""
    base = load_hardware("h100-sxm")
    prof = NetworkProfile.stored(1024, 60, 6000)
    res = evaluate_hw(prof, base, [df])
    ax = grid_axes()
    at_base = tuple(list(ax[k]).index(v[0]) for k, v in zip(AXES, _axis_point(base).values()))
    assert res.seconds[at_base] == pytest.approx(predict(df, prof, base).seconds, rel=1e-12)
    rng = np.random.default_rng(1)
    for flat in rng.integers(0, len(res), 4):
        idx = np.unravel_index(int(flat), res.seconds.shape)
        one = {k: ax[k][[i]] for k, i in zip(AXES, idx)}
        hw = scaled(base, one)
        hw = hw.__class__(
            **{f: (np.asarray(v).ravel()[0] if isinstance(v, np.ndarray) else v) for f, v in hw.__dict__.items()}
        )
        assert res.seconds[idx] == pytest.approx(predict(df, prof, hw).seconds, rel=1e-9)


def test_grid_is_distinct_and_proxies_grow():
    ax = grid_axes()
    assert all(len(np.unique(v)) == len(v) for v in ax.values())
    big = grid_axes(2)
    assert np.prod([len(v) for v in big.values()]) > 1_000_000
    for kind in ("area", "power"):
        p = proxy(ax, kind)
        assert p.shape == tuple(len(ax[k]) for k in AXES)
        for axis in range(5):  # never cheaper with more of anything (area ignores the clock)
            assert (np.diff(p, axis=axis) >= 0).all()
    h100 = float(
        proxy({k: np.asarray(v) for k, v in _axis_point(load_hardware("h100-sxm")).items()}, "area").ravel()[0]
    )
    assert 400 < h100 < 700  # mm2: the order of an H100's enabled die


def test_pareto_front():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
    value = np.array([1.0, 3.0, 2.0, 2.5, 5.0, 4.0])
    assert pareto(cost, value).tolist() == [0, 1, 4]


def test_cli_writes_the_front(tmp_path):
    from spdnn.cli import main

    png, out = tmp_path / "front.png", tmp_path / "front.json"
    assert (
        main(
            [
                "model",
                "hwdse",
                "--neurons",
                "1024",
                "--layers",
                "60",
                "--inputs",
                "6000",
                "--proxy",
                "power",
                "--plot",
                str(png),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:4] == b"\x89PNG"
    d = json.loads(out.read_text())
    assert d["gpus"] == np.prod([len(v) for v in d["axes"].values()])
    front = d["front"]
    assert len(front) > 5
    assert all(
        a["proxy"] <= b["proxy"] and a["edges_per_second"] < b["edges_per_second"] for a, b in zip(front, front[1:])
    )
    assert all("measured" in f for f in front) and all("measured" in x for x in d["designs"])
    assert set(d["presets"]) >= {"h100-sxm"}
