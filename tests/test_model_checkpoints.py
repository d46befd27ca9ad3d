"""The model's costs of sparse check points (issue 18, items 3 and 4): shared-memory wavefronts of the
fused segments' broadcast column loads, check points' own kernels queued while the GPU runs them, and
tune keeping the engine defaults unless the predicted gain exceeds the validated error margin."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from spdnn.model.analysis import Workload, analyse, load_wavefronts
from spdnn.model.cost import overhead_cost
from spdnn.model.directives import ENGINE_DEFAULT, Dataflow
from spdnn.model.hardware import load_hardware
from spdnn.model.policy import PolicyResult
from spdnn.model.tune import tune
from spdnn.model.validated import TUNE_MARGIN_LOG, TUNE_MARGIN_SOURCE


def test_load_wavefronts_hand_values():
    """Banks (distinct bytes / 128) against the return path (a 32-bit register per lane per
    wavefront, two packed when lanes share addresses): the larger counts."""
    assert load_wavefronts(4.0, 1.0) == 1  # a gather: 32 lanes x 4 B, distinct
    assert load_wavefronts(16.0, 32.0) == 2  # LDS.128 broadcast (int4 / float4 column loads): 4 registers, packed 2
    assert load_wavefronts(16.0, 1.0) == 4  # 16 B distinct per lane: 512 B through the banks
    assert load_wavefronts(4.0, 32.0) == 1  # a 4-byte broadcast
    assert load_wavefronts(8.0, 32.0) == 1  # 2 registers, packed
    np.testing.assert_array_equal(load_wavefronts(np.array([4.0, 16.0]), np.array([1.0, 32.0])), [1, 2])


def test_fused_tile_layer_wavefronts_by_hand():
    """One tile of 32 rows, one 64-wide merged layer (64 columns of KW = 32), fused.m: per layer
    2048 gathers (64 x 32, one wavefront each), 64 x 16 LDS.128 broadcasts of the column's indices and
    values (2 wavefronts each: 2048; 1024 before the return-path rule), 64 stores into the output
    tile, the layer's columns staged (16 KB / 128 = 128); per launch the input tile's fill and the
    output tile's write-back (8 KB / 128 = 64 each)."""
    hw = load_hardware("h200")
    df = Dataflow(dataflow="fused", warps=16, fuse=8, check_every=8)
    per_layer = 2048 + 64 * 16 * 2 + 64 + 16384 / 128
    for seg in (1.0, 2.0, 8.0):
        an = analyse(df.nest(), df.params(), Workload(32.0, 32.0, 64.0, 64.0, 64.0, 32.0, seg), hw)
        assert float(an.smem_wavefront_bytes) / 128.0 == pytest.approx(seg * per_layer + 2 * 64)
    # the lone tile's shared-memory time per layer: 4288 wavefronts at one per clock on one SM
    an = analyse(df.nest(), df.params(), Workload(32.0, 32.0, 64.0, 64.0, 64.0, 32.0, 8.0), hw)
    t_smem = float(an.smem_wavefront_bytes) / (128.0 * hw.clock_hz) / 8.0
    assert t_smem == pytest.approx((per_layer + 16) / hw.clock_hz)
    assert t_smem > 2.1e-6  # (the H200 profile: 2.65-3.1 us per layer of one block, 16 warps)


def _policy(**kw) -> PolicyResult:
    base = dict(
        batch=np.array([60000.0]),
        batches=np.array([1.0]),
        present=np.zeros((1, 4)),
        alive_in=np.zeros((1, 4)),
        checks=np.array([0.0]),
        compactions=np.array([0.0]),
        compact_rows=np.array([0.0]),
        scan_rows=np.array([0.0]),
        points=np.array([1.0]),
    )
    base.update({k: np.array([float(v)]) for k, v in kw.items()})
    return PolicyResult(**base)  # type: ignore[arg-type]


def test_check_point_kernels_queued_while_the_gpu_runs_them():
    """A compaction is 3 launches (scan, compact, memset): the host queues them at call_s each (the
    microbenchmarked launch, not the layer loop's fitted launch_s) while the GPU runs them, so the
    longer stream counts. Hand values on constants chosen round."""
    hw = replace(
        load_hardware("h200", calibrated=False),
        launch_s=20e-6,
        call_s=6e-6,
        kernel_min_s=3e-6,
        sync_s=50e-6,
        hbm_efficiency=1.0,
        clock_hz=2e9,
    )
    bw = hw.hbm_bandwidth

    def cost(**kw) -> float:
        return float(np.asarray(overhead_cost(hw, _policy(**kw), 64.0, 1024)[0]).item())

    none = cost()
    # host-bound: 3 x 6 us = 18 us against 3 x 3 us + one chunk of the scan (300 cycles: 0.15 us) + a copy
    one = cost(compactions=1, scan_rows=1000, compact_rows=1000)
    gpu = 3 * 3e-6 + 300 / 2e9 + 8.0 * 1000 / bw
    assert (one - none) == pytest.approx(max(18e-6, gpu))
    assert (one - none) < 3 * hw.launch_s  # the frozen model charged 3 x launch_s + the GPU's time
    # GPU-bound: a long scan (100 chunks: 15 us) and copy
    rows = 1024 * 100
    big = cost(compactions=1, scan_rows=rows, compact_rows=rows * 64)
    gpu = 3 * 3e-6 + 100 * 300 / 2e9 + 8.0 * rows * 64 / bw
    assert (big - none) == pytest.approx(gpu)
    # carried rows: 4 spdnn_saturated-type launches (a count, a drop's mark, scan and compact)
    car = cost(carry_launches=4, drops=1, drop_rows=1000, carry_floats=1000)
    assert (car - none) == pytest.approx(max(4 * 6e-6, 4 * 3e-6 + 300 / 2e9 + 4.0 * 1000 / bw))
    # a check point is still its round trip
    chk = cost(checks=1)
    assert (chk - none) == pytest.approx(50e-6)


def test_tune_keeps_the_defaults_below_the_margin():
    """The search's best replaces the engine defaults only when predicted faster by more than
    exp(margin); the decision says which and why, and names the candidate."""
    free = tune(1024, 120, "NVIDIA H200", margin_log=0.0)
    gain = free["decision"]["predicted_gain"]
    assert gain >= 1.0  # the defaults are in the searched space
    strict = tune(1024, 120, "NVIDIA H200", margin_log=math.log(gain) + 0.01)
    assert strict["decision"]["choice"] == "engine defaults"
    assert strict["engine_options"] == ENGINE_DEFAULT.engine_options()
    assert strict["predicted_seconds"] == pytest.approx(strict["decision"]["default_predicted_seconds"])
    assert strict["decision"]["candidate"]["engine_options"] == free["decision"]["candidate"]["engine_options"]
    assert "defaults kept" in strict["decision"]["reason"]
    if gain > 1.0:
        loose = tune(1024, 120, "NVIDIA H200", margin_log=math.log(gain) - 0.01)
        assert loose["decision"]["choice"] == "tuned"
        assert loose["engine_options"] == loose["decision"]["candidate"]["engine_options"]
        assert loose["predicted_seconds"] == pytest.approx(loose["decision"]["candidate"]["predicted_seconds"])


@pytest.mark.parametrize("neurons", [1024, 16384])
def test_tune_default_margin_is_the_validated_one(neurons):
    d = tune(neurons, 120, "NVIDIA H200")["decision"]
    assert d["margin_log"] == TUNE_MARGIN_LOG and d["required_gain"] == pytest.approx(math.exp(TUNE_MARGIN_LOG))
    assert d["margin_source"] == TUNE_MARGIN_SOURCE and "H200" in d["margin_source"]
    assert (d["choice"] == "tuned") == (d["predicted_gain"] > d["required_gain"])


def test_tune_cli_says_what_it_did(tmp_path, capsys):
    from spdnn.cli import main

    out = tmp_path / "tuned.json"
    assert (
        main(["model", "tune", "--neurons", "1024", "--layers", "120", "--gpu", "NVIDIA H200", "--output", str(out)])
        == 0
    )
    d = json.loads(out.read_text())
    err = capsys.readouterr().err
    assert d["decision"]["choice"] in ("tuned", "engine defaults") and d["decision"]["choice"] in err
