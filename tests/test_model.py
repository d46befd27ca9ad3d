"""spdnn.model: hand-computed traffic of a tiny layer, constraints, vectorised == scalar, tune schema."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spdnn.model import Dataflow, NetworkProfile, load_hardware, parse_directives
from spdnn.model.cost import GATHER, SMEM, blocks_per_sm, layer_cost, predict, smem_per_block, valid
from spdnn.model.explore import DEFAULT_SPACE, evaluate
from spdnn.model.network import layer_shapes
from spdnn.model.policy import simulate


@pytest.fixture(scope="module")
def hw():
    return load_hardware("h100-sxm", calibrated=False)


def test_tiny_layer_bytes_per_level(hw):
    """N = 64 (P = 4 distinct columns of KW = 32), 4 rows in one tile of 32, W = 4 warps, dedup.

    tau = 1 live tile; a line = one neuron of the tile = 4 * 32 = 128 B.
    uses of input lines = 1 tile * 4 columns * 32 = 128; MACs = 32 lanes * 128 = 4096.
    DRAM: input 64 lines * 128 = 8192 (reuse 4*32/64 = 2, second use hits L2: the tile is 8 KB)
          + output 64 lines * 128 = 8192 + weights 4*32*8 = 1024 + out_ptr/out_list 4*(4+64) = 272
          + flags 16 * 4 rows = 64                                             = 17744
    L2->SM: lines touched by the block 8192 (the other uses hit L1) + output 8192 + weights 1024 = 17408
    registers: 8 bytes per MAC = 32768; shared memory: 0.
    """
    sb = smem_per_block(GATHER, 32, 64, 64)
    assert sb == 128
    bsm = blocks_per_sm(GATHER, 4, 32, sb, hw)  # 62 regs x 128 threads -> 8 blocks per SM
    assert bsm == 8
    c = layer_cost(hw, GATHER, 32.0, 1.0, 4.0, 16.0, 4.0, 4.0, 64.0, 64.0, 4.0, 32.0, sb, bsm)
    assert float(c["tau"]) == 1.0 and float(c["gx"]) == 1.0
    assert float(c["macs"]) == 4096
    assert float(c["dram"]) == 17744
    assert float(c["l2"]) == 17408
    assert float(c["smem"]) == 0
    assert float(c["reg"]) == 32768
    assert float(c["reuse_in"]) == 2.0


def test_tiny_layer_smem_tile(hw):
    """The same layer with the input tile staged in shared memory (Hidayetoglu), R = 8 rows.

    tiles = ceil(4 / 8) = 1; line = 32 B; tile = 64 lines * 32 = 2048 B loaded once (gx = 1):
    DRAM = 2048 + out 2048 + 1024 + 272 + 64 = 5456; L2->SM = 2048 + 2048 + 1024 = 5120;
    smem = tile writes 2048 + reads 128 uses * 32 = 6144; registers 8 * 8 * 128 = 8192.
    """
    sb = smem_per_block(SMEM, 8, 64, 64)
    assert sb == 4 * 8 * 64 + 128
    bsm = blocks_per_sm(SMEM, 4, 32, sb, hw)
    c = layer_cost(hw, SMEM, 8.0, 1.0, 4.0, 16.0, 4.0, 4.0, 64.0, 64.0, 4.0, 32.0, sb, bsm)
    assert float(c["dram"]) == 5456
    assert float(c["l2"]) == 5120
    assert float(c["smem"]) == 6144
    assert float(c["reg"]) == 8192


def test_constraints(hw):
    assert not valid(SMEM, 8, 32, 1, smem_per_block(SMEM, 32, 4096, 4096), hw, 120)  # 512 KB tile
    assert valid(SMEM, 8, 8, 1, smem_per_block(SMEM, 8, 1024, 1024), hw, 120)
    assert not valid(GATHER, 33, 32, 1, 128, hw, 120)  # 1056 threads per block
    assert not valid(GATHER, 8, 32, 2, 128, hw, 120)  # fusion needs the fused dataflow
    with pytest.raises(ValueError):
        Dataflow(dataflow="gather", row_tile=16)
    p = predict(Dataflow(dataflow="smem", variant="dedup", row_tile=32), NetworkProfile.stored(4096, 12), hw)
    assert not p.valid and p.seconds == float("inf")


def test_layer_shapes_match_engine_plan():
    from spdnn.engines.cuda import CudaEngine
    from spdnn.generate import generate_layers
    from spdnn.io.cache import Weights

    n, layers = 256, 14
    w = Weights.from_matrices(list(generate_layers(n, layers, 1)))
    for variant in ("dedup", "merged"):
        plan = CudaEngine._plan(w, layers, variant)
        s = layer_shapes(n, layers, variant)
        assert [p["win"] for p in plan] == s.win.tolist()
        assert [p["wout"] for p in plan] == s.wout.tolist()
        assert [p["ucols"] for p in plan] == s.ucols.tolist()
        assert all(p["kw"] <= k for p, k in zip(plan, s.kw.tolist()))  # padded KW never above the model's


def test_policy_matches_engine_counts():
    """Blocking check points and compactions of the engine on the H100, default policy, a kernel per
    layer (benchmarks/results/gpu-2026-11-25-peeks.json, 4096 x 120: cuda-unfused and cuda-dedup)."""
    prof = NetworkProfile.stored(4096, 120)
    for variant, checks, comps in (("merged", 6, 4), ("dedup", 12, 11)):
        wout = layer_shapes(4096, 120, variant).wout[None, :].astype(float)
        r = simulate(prof, wout, [8], [64e6], [1 / 16], [60000], [1])
        assert (r.checks[0], r.compactions[0]) == (checks, comps)


def test_directives_roundtrip():
    df = Dataflow(dataflow="fused", variant="merged", warps=4, row_tile=16, fuse=8, grid_factor=32, check_every=16,
                  check_bytes=16e6, compact_fraction=0.25, batch_rows=15008)
    assert parse_directives(df.directives()) == df
    text = "Stage Yin smem   # Hidayetoglu\nSpatialMap r 8 lane\nSpatialMap j 4 warp\nVariant dedup\n"
    assert parse_directives(text) == Dataflow(dataflow="smem", variant="dedup", row_tile=8, warps=4)
    with pytest.raises(ValueError):
        parse_directives("Frobnicate 3")


SMALL = dict(DEFAULT_SPACE, warps=(2, 8, 32), grid_factor=(4, 16), check_every=(1, 8), check_bytes=(64e6,),
             compact_fraction=(1 / 16,), batch_rows=(0, 15008), fuse=(1, 4, 24), row_tile=(8, 32))


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


def test_tune_schema(tmp_path):
    from spdnn.cli import main

    out = tmp_path / "tuned.json"
    assert main(["model", "tune", "--neurons", "1024", "--layers", "120", "--gpu", "NVIDIA H100 80GB HBM3",
                 "--output", str(out)]) == 0
    d = json.loads(out.read_text())
    assert set(d) >= {"engine_options", "predicted_seconds", "model"}
    assert d["engine_options"]["variant"] in ("merged", "dedup")
    assert 1 <= d["engine_options"]["warps"] <= 32
    assert d["predicted_seconds"] > 0
    assert d["model"]["preset"] == "h100-sxm"
    from spdnn.engines.cuda import CudaEngine  # the options are the engine's keyword arguments
    import inspect

    assert set(d["engine_options"]) <= set(inspect.signature(CudaEngine.__init__).parameters)


def test_no_gpu_uses_default_preset():
    from spdnn.model.hardware import gpu_slug, preset_for_gpu

    assert preset_for_gpu(None) == "h100-sxm"
    assert preset_for_gpu("NVIDIA A100-SXM4-80GB") == "a100"
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_slug(None) == "nogpu"


def test_engine_options_of_each_dataflow():
    """gather: a kernel per layer (fused segments off); fused: segments as long as the check
    interval; the smem dataflow and fused full-width layers exist in the model only."""
    from spdnn.model import Dataflow

    gather = Dataflow(dataflow="gather", warps=16, check_every=4).engine_options()
    assert gather["fuse_width"] == 0 and gather["check_every"] == 4 and gather["warps"] == 16
    fused = Dataflow(dataflow="fused", fuse=16, check_every=2, warps=8).engine_options()
    assert "fuse_width" not in fused and fused["check_every"] == 16 and fused["variant"] == "merged"
    with pytest.raises(ValueError, match="smem"):
        Dataflow(dataflow="smem", row_tile=16).engine_options()
    with pytest.raises(ValueError, match="merged"):
        Dataflow(dataflow="fused", fuse=8, variant="dedup").engine_options()


def test_fused_design_shared_memory_grows_with_width():
    """A fused block holds two feature tiles and two layers' columns: 4096's merged layers (256
    wide) need 4x the 1024 network's (64 wide); 16384's (1024 wide) do not fit an H100 block."""
    from spdnn.model import Dataflow, NetworkProfile, load_hardware
    from spdnn.model.cost import predict

    hw = load_hardware("h100-sxm")
    sb = {}
    for n in (1024, 4096, 16384):
        p = predict(Dataflow(dataflow="fused", fuse=8), NetworkProfile.stored(n, 120, 60000), hw)
        sb[n] = p.occupancy["smem_per_block"]
        assert p.valid == (n <= 4096)
    assert (sb[4096] - 128) == pytest.approx(4 * (sb[1024] - 128))
