"""spdnn.model: hand-computed traffic of the engine's kernels on a tiny layer, constraints,
vectorised == scalar, tune schema, the engine's files against the engine."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from spdnn.model import Dataflow, NetworkProfile, load_hardware, parse_directives
from spdnn.model.analysis import Workload, analyse
from spdnn.model.cost import layer_cost, predict
from spdnn.model.explore import DEFAULT_SPACE, engine_spaces, evaluate
from spdnn.model.nest import load_nest
from spdnn.model.network import layer_shapes
from spdnn.model.policy import simulate


@pytest.fixture(scope="module")
def hw():
    return load_hardware("h100-sxm", calibrated=False)


TINY = Workload(n=4.0, a=4.0, win=64.0, wout=64.0, ucols=4.0, kw=32.0)


def test_tiny_layer_gather(hw):
    """gather.m on N = 64 (P = 4 distinct columns of KW = 32), 4 rows in one tile of 32, 4 warps, dedup.

    gx = min(ceil(4 / 4), ceil(132 * 16 / 1)) = 1 block; a line = one neuron of the tile = 128 B.
    Registers: every lane gathers KW = 32 values per column: 4 columns x 32 lines = 128 line uses,
    16384 B; the weights, one broadcast per warp (multicast over the 32 lanes): 4 x 32 x 8 = 1024 B.
    L1 (one block): compulsory = the lines it touches, min(64, 4 x 32) x 128 = 8192 B, the rest hits;
    weights 1024 B. L2 -> DRAM: input 8192 (the second use hits L2), weights 1024, out_ptr/out_list
    4 (4 + 64) = 272, flags 16 x 4 = 64; outputs: 64 neurons x 128 B = 8192 each way.
      DRAM = 8192 + 1024 + 8192 + 272 + 64 = 17744; L2 = 8192 + 1024 + 8192 = 17408
      SM SRAM (L1 accesses) = 16384 + 1024 = 17408; registers: 8 B per MAC, 32 lanes x 128 = 32768
    """
    c = layer_cost(hw, load_nest("gather"), {"WARPS": 4.0}, TINY)
    an = c["analysis"]
    assert float(an.blocks) == 1.0 and float(an.blocks_per_cluster) == 1.0
    assert float(c["macs"]) == 4096
    assert float(c["dram"]) == 17744
    assert float(c["l2"]) == 17408
    assert float(c["smem"]) == 16384 + 1024
    assert float(c["reg"]) == 32768
    t = an.tensors
    assert float(t["W"]["reg"]["multicast"]) == 32  # one broadcast load serves the warp's lanes
    assert float(t["Yin"]["reg"]["traffic"]) == 16384
    assert float(t["Yin"]["smem"]["traffic"]) == 8192 and float(t["Yin"]["smem"]["hit"]) == 1.0
    assert float(t["Yin"]["l2"]["traffic"]) == 8192
    assert float(an.regs) == 38  # ptxas's count for spdnn_layer at 4 warps (registers.json)
    assert float(an.smem_block) == 128
    # a dataflow that is not one of the engine's kernels keeps the directives' estimate
    hypothetical = dataclasses.replace(load_nest("gather"), kernel="gather_hypothetical")
    est = layer_cost(hw, hypothetical, {"WARPS": 4.0}, TINY)["analysis"]
    assert float(est.regs) == 29 + 32 + 1  # the 32 gathers in flight and the accumulator


def test_tiny_layer_smem_tile(hw):
    """smem.m on the same layer, R = 8 rows per tile: 8 lanes are rows, 4 are columns (32 / R).

    tiles = ceil(4 / 8) = 1; a staged tile = 8 rows x all 64 input neurons x 4 B = 2048 B, loaded
    once (gx = 1, the columns' fold does not change it: a dense tile does not depend on j);
    registers gather 4 columns x 32 x 8 rows x 4 B = 4096 B from it. DRAM = tile 2048 + weights
    1024 + outputs 64 x 8 x 4 = 2048 + 272 + 64 = 5456; L2 = 2048 + 1024 + 2048 = 5120.
    SM SRAM = tile 2048 + gathers 4096 + weights 1024 = 7168; registers 8 x 8 x 128 = 8192.
    """
    c = layer_cost(hw, load_nest("smem"), {"WARPS": 4.0, "R": 8.0}, TINY)
    assert float(c["dram"]) == 5456
    assert float(c["l2"]) == 5120
    assert float(c["smem"]) == 7168
    assert float(c["reg"]) == 8192
    assert float(c["smem_block"]) == 4 * 8 * 64 + 128
    assert float(c["analysis"].tensors["Yin"]["smem"]["fills_per_block"]) == 1.0


def test_fused_segment_keeps_features_on_chip(hw):
    """fused.m, one tile of 32 rows, a launch of 8 layers of 64 x 64: the tile is loaded once and
    written once per launch (Yout of layer l is Yin of layer l + 1), the columns staged per layer."""
    wl = Workload(n=32.0, a=32.0, win=64.0, wout=64.0, ucols=64.0, kw=32.0, seg=8.0)
    an = analyse(load_nest("fused"), {"WARPS": 8.0}, wl, hw)
    t = an.tensors
    assert float(t["Yin"]["smem"]["traffic"]) == 32 * 64 * 4  # once per launch, not 8 times
    assert float(t["Yout"]["smem"]["traffic"]) == 32 * 64 * 4
    assert float(t["W"]["smem"]["traffic"]) == 8 * 64 * 32 * 8  # each layer's columns, once per block
    # two feature tiles and two layers' columns (double-buffered) + 128 B
    assert float(an.smem_block) == 2 * 32 * 64 * 4 + 2 * 64 * 32 * 8 + 128
    assert an.lockstep and float(an.launches) == 1


def test_constraints(hw):
    p = predict(Dataflow(dataflow="smem", variant="dedup", row_tile=32), NetworkProfile.stored(4096, 12), hw)
    assert not p.valid and p.seconds == float("inf") and "line" in p.reason and "shared memory" in p.reason
    p = predict(Dataflow(dataflow="gather", warps=33), NetworkProfile.stored(1024, 12), hw)
    assert not p.valid and "threads" in p.reason  # 1056 threads per block
    with pytest.raises(ValueError):
        Dataflow(dataflow="gather", row_tile=16)
    with pytest.raises(ValueError):
        Dataflow(dataflow="gather", fuse=2)


def test_engine_files_match_the_engine():
    """The directive files' defaults are the engine's: warps, fuse width, the grid rule."""
    import math

    from spdnn.engines import cuda

    for name in ("gather", "fused"):
        assert load_nest(name).params["WARPS"][0] == cuda.WARPS
    assert load_nest("fused").params["FUSE_WIDTH"][0] == cuda.FUSE_WIDTH
    gx = load_nest("gather").section("block").count
    for ucols, warps, gf, rows in ((64, 8, 16, 60000), (4096, 16, 4, 600), (32, 32, 64, 33)):
        env = {
            "WARPS": np.asarray(warps),
            "GF": np.asarray(gf),
            "SMS": np.asarray(132.0),
            "Sz": {"j": np.asarray(ucols), "r": np.asarray(rows)},
        }
        want = max(1, min(math.ceil(ucols / warps), math.ceil(132 * gf / math.ceil(rows / 32))))
        assert float(gx(env)) == want


def test_layer_shapes_match_engine_plan():
    from spdnn.engines.layer_plan import plan_layers
    from spdnn.generate import generate_layers
    from spdnn.io.cache import Weights

    n, layers = 256, 14
    w = Weights.from_matrices(list(generate_layers(n, layers, 1)))
    for variant in ("dedup", "merged"):
        plan = plan_layers(w, layers, variant)
        s = layer_shapes(n, layers, variant)
        assert [p.win for p in plan] == s.win.tolist()
        assert [p.wout for p in plan] == s.wout.tolist()
        assert [p.ucols for p in plan] == s.ucols.tolist()
        assert all(p.kw <= k for p, k in zip(plan, s.kw.tolist()))  # padded KW never above the model's


def test_policy_matches_engine_counts():
    """Blocking check points and compactions of the engine on the H100, default policy, a kernel per
    layer (benchmarks/results/gpu-2026-11-25-peeks.json, 4096 x 120: cuda-unfused and cuda-dedup).
    That engine carried no rows: the model without carry reproduces it; with carry the batch ends early.
    The engine ran on the measured set's network (the generator before issue 15): that profile."""
    prof = NetworkProfile.stored(4096, 120, profile_set="measured")
    for variant, checks, comps in (("merged", 6, 4), ("dedup", 12, 11)):
        wout = layer_shapes(4096, 120, variant).wout[None, :].astype(float)
        r = simulate(prof, wout, [8], [64e6], [1 / 16], [60000], [1], [False])
        assert (r.checks[0], r.compactions[0]) == (checks, comps)
        carried = simulate(prof, wout, [8], [64e6], [1 / 16], [60000], [1])
        assert r.layers_run[0] == 120 and carried.layers_run[0] < 40  # the batch ends once its survivors saturate


def test_directives_roundtrip():
    for df in (
        Dataflow(
            dataflow="fused",
            variant="merged",
            warps=4,
            row_tile=16,
            fuse=8,
            grid_factor=32,
            check_every=16,
            check_bytes=16e6,
            compact_fraction=0.25,
            batch_rows=15008,
        ),
        Dataflow(dataflow="gather", warps=2, grid_factor=64, check_every=1),
        Dataflow(dataflow="gather", carry_saturated=False),
        Dataflow(dataflow="smem", row_tile=8, warps=4, variant="dedup"),
    ):
        assert parse_directives(df.directives()) == df


SMALL = dict(
    DEFAULT_SPACE,
    warps=(2, 8, 32),
    grid_factor=(4, 16),
    check_every=(1, 8),
    check_bytes=(64e6,),
    compact_fraction=(1 / 16,),
    batch_rows=(0, 15008),
    fuse=(1, 4, 24),
    row_tile=(8, 32),
    carry_saturated=(True, False),
)


@pytest.mark.parametrize("neurons", [1024, 4096])
def test_vectorised_equals_scalar_and_argmin(hw, neurons):
    prof = NetworkProfile.stored(neurons, 24, 6000)
    res = evaluate(prof, hw, SMALL)
    assert len(res) > 100
    scalar = np.array([predict(res.design(i), prof, hw).seconds for i in range(len(res))])
    both = np.isfinite(scalar)
    assert np.array_equal(both, np.isfinite(res.seconds))
    np.testing.assert_allclose(res.seconds[both], scalar[both], rtol=1e-9)
    best = res.best(1)[0]
    assert res.seconds[best] == pytest.approx(scalar[both].min(), rel=1e-12)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(res), 10):
        p = predict(res.design(int(i)), prof, hw)
        assert res.joules[i] == pytest.approx(p.joules, rel=1e-9)


def test_mapping_space_counts_distinct_files():
    """Only the Params a kernel's file reads vary: no two designs are the same directive file."""
    res = evaluate(NetworkProfile.stored(1024, 24, 6000), load_hardware("h100-sxm"), SMALL)
    texts = {res.design(i).directives() for i in range(len(res))}
    assert len(texts) == len(res)


def test_tune_schema(tmp_path):
    from spdnn.cli import main

    out = tmp_path / "tuned.json"
    assert (
        main(
            [
                "model",
                "tune",
                "--neurons",
                "1024",
                "--layers",
                "120",
                "--gpu",
                "NVIDIA H100 80GB HBM3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert set(d) >= {"engine_options", "predicted_seconds", "model", "measured"}
    assert d["engine_options"]["variant"] in ("merged", "dedup")
    assert 1 <= d["engine_options"]["warps"] <= 32
    assert d["predicted_seconds"] > 0
    assert d["model"]["preset"] == "h100-sxm"
    assert d["measured"].startswith("measured")
    import inspect

    from spdnn.engines.cuda import CudaEngine  # the options are the engine's keyword arguments

    assert set(d["engine_options"]) <= set(inspect.signature(CudaEngine.__init__).parameters)


def test_tune_searches_only_validated_knobs():
    """tune's spaces: every knob inside the range validation measured; the knobs it never varied
    at the engine's defaults; only dataflows that were measured."""
    from spdnn.model.validated import MEASURED, NOT_VARIED, VALIDATED, measured_label

    for space in engine_spaces():
        (dataflow,) = space["dataflow"]
        v = VALIDATED[dataflow]
        for knob, values in v.items():
            if knob in ("variant", "row_tile", "batch_rows"):
                assert set(space[knob]) <= set(values)
            else:
                key = knob
                assert min(values) <= min(space[key]) and max(space[key]) <= max(values), knob
        for knob, value in NOT_VARIED.items():
            assert space[knob] == (value,)
        assert (
            measured_label(Dataflow(dataflow=dataflow, variant=space["variant"][0], fuse=space["fuse"][0])) == MEASURED
        )
    assert measured_label(Dataflow(dataflow="smem")).startswith("never")
    assert measured_label(Dataflow(dataflow="fused", fuse=8, row_tile=16)).startswith("never")


def test_no_gpu_uses_default_preset():
    from spdnn.model.hardware import gpu_slug, preset_for_gpu

    assert preset_for_gpu(None) == "h100-sxm"
    assert preset_for_gpu("NVIDIA A100-SXM4-80GB") == "a100"
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_slug(None) == "nogpu"


def test_engine_options_of_each_dataflow():
    """gather: a kernel per layer (fused segments off); fused: segments as long as the check
    interval; the smem dataflow and fused full-width layers exist in the model only."""
    gather = Dataflow(dataflow="gather", warps=16, check_every=4).engine_options()
    assert gather["fuse_width"] == 0 and gather["check_every"] == 4 and gather["warps"] == 16
    fused = Dataflow(dataflow="fused", fuse=16, check_every=2, warps=8).engine_options()
    assert "fuse_width" not in fused and fused["check_every"] == 16 and fused["variant"] == "merged"
    assert "carry_saturated" not in gather  # the engine's default: carried
    assert Dataflow(carry_saturated=False).engine_options()["carry_saturated"] is False
    with pytest.raises(ValueError, match="smem"):
        Dataflow(dataflow="smem", row_tile=16).engine_options()
    with pytest.raises(ValueError, match="32 rows"):
        Dataflow(dataflow="fused", fuse=8, row_tile=16).engine_options()
    # full-width fused segments: the engine's spdnn_fused_scatter, by its own width rule
    scatter = Dataflow(dataflow="fused", fuse=8, variant="dedup").engine_options()
    assert scatter["variant"] == "dedup" and scatter["check_every"] == 8 and "fuse_width" not in scatter


def test_fused_layers_and_their_shared_memory():
    """The engine fuses the merged layers up to 256 wide: all but the N-wide input layer at N = 1024
    and 4096 (whose 256-wide tiles need 4x the 1024 network's 64-wide), none at 16384, where the
    fused design is the kernel per layer."""
    hw = load_hardware("h100-sxm")
    sb = {}
    for n in (1024, 4096, 16384):
        p = predict(Dataflow(dataflow="fused", fuse=8, check_every=8), NetworkProfile.stored(n, 120, 60000), hw)
        sb[n] = p.occupancy["smem_per_block"]
        assert p.valid
        assert p.policy["fused_layers"] == (119 if n <= 4096 else 0)
    assert (sb[4096] - 128) == pytest.approx(4 * (sb[1024] - 128))
    gather = predict(Dataflow(check_every=8), NetworkProfile.stored(16384, 120, 60000), hw)
    fused = predict(Dataflow(dataflow="fused", fuse=8, check_every=8), NetworkProfile.stored(16384, 120, 60000), hw)
    assert fused.seconds == pytest.approx(gather.seconds)
