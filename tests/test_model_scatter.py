"""The model's full-width fused segments (dataflows/fused_scatter.m, the engine's spdnn_fused_scatter):
its fusion rule against the engine's (layer_plan.fusable / default_fuse_width), the scatter's
costs from the directives, and the directives' checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.engines import layer_plan
from spdnn.model.analysis import Workload, analyse
from spdnn.model.cost import fusable, predict
from spdnn.model.directives import Dataflow, parse_directives
from spdnn.model.hardware import load_hardware
from spdnn.model.nest import DIRECTIVE_DIR, DirectiveError, load_nest, parse_nest
from spdnn.model.network import NetworkProfile

SCATTER = (DIRECTIVE_DIR / "fused_scatter.m").read_text()


def _model_mask(plan, variant: str, hw, warps: int = 16, width: int | None = None) -> list[bool]:
    """The model's rule on the plan's own layer shapes (the fused dataflow's file for the variant)."""
    df = Dataflow(dataflow="fused", fuse=8, variant=variant, warps=warps)
    params = df.params()
    if width is not None:
        params["FUSE_WIDTH"] = float(width)
    shapes = [np.array([getattr(p, f) for p in plan], float) for f in ("win", "wout", "ucols", "kw")]
    return fusable(df.nest(), params, *shapes, hw=hw).tolist()


def _engine_mask(weights, layers, variant, hw, warps=16, width=None) -> list[bool]:
    net = layer_plan.plan_network(weights, layers, variant, fuse_width=width, smem_optin=hw.smem_per_block, warps=warps)
    return [p.fused for p in net.layers]


def test_scatter_file_matches_the_engine():
    nest = load_nest("fused_scatter")
    assert nest.params["FUSE_WIDTH"][0] == layer_plan.FUSE_WIDTH_SCATTER
    assert nest.params["REGS"][0] == layer_plan.SCATTER_REGS
    assert nest.variant == "dedup" and nest.scatter and nest.fuse.fallback == "gather"
    assert Dataflow(dataflow="fused", variant="dedup").nest().kernel == "fused_scatter"
    assert Dataflow(dataflow="fused", variant="merged").nest().kernel == "fused"
    # the file read back is the engine's dataflow, not a custom design
    df = parse_directives(Dataflow(dataflow="fused", fuse=4, variant="dedup", warps=8).directives(), "x.m")
    assert not df.custom and df.dataflow == "fused" and df.variant == "dedup" and df.warps == 8


def test_fusion_rule_agrees_with_layer_plan_on_the_challenge_sample(sample_cache):
    from spdnn.io.cache import load_weights

    weights = load_weights(sample_cache["weights"])
    hw = load_hardware("h200")
    for variant in ("dedup", "merged"):
        plan = layer_plan.plan_layers(weights, 30, variant)
        for warps in (1, 2, 4, 16, 32):
            want = _engine_mask(weights, 30, variant, hw, warps)
            assert _model_mask(plan, variant, hw, warps) == want, (variant, warps)
    # dedup at 16 warps: every layer (64 or 32 distinct columns, 1024 wide) fuses; at 2 warps
    # (32 columns in registers) only the 32-column layers (the last of each group of 6)
    plan = layer_plan.plan_layers(weights, 30, "dedup")
    assert all(_model_mask(plan, "dedup", hw, 16))
    assert (
        _model_mask(plan, "dedup", hw, 2) == [p.ucols <= 32 for p in plan] and 0 < sum(p.ucols <= 32 for p in plan) < 30
    )


class _Weights:
    """A general network: random sparse layers with runs of duplicate columns (not RadiX-Net)."""

    def __init__(self, n: int, layers: int, seed: int, dup: int):
        rng = np.random.default_rng(seed)
        self.neurons, self.bias, self.mats = n, -0.3, []
        for _ in range(layers):
            base = sp.random(n, max(1, n // dup), density=min(1.0, 12 / n), random_state=rng, format="csc")
            cols = rng.integers(0, base.shape[1], n)
            self.mats.append(sp.csr_matrix(base[:, cols].astype(np.float32)))

    def layer(self, k: int):
        return self.mats[k]


@pytest.mark.parametrize("n, dup", [(96, 2), (300, 4), (1100, 8), (640, 1)])
def test_fusion_rule_agrees_with_layer_plan_on_a_general_network(n, dup):
    weights = _Weights(n, 6, seed=n, dup=dup)
    for hw_name in ("h200", "h100-sxm"):
        hw = load_hardware(hw_name)
        for variant in ("dedup", "merged"):
            plan = layer_plan.plan_layers(weights, 6, variant)
            for warps in (1, 4, 16):
                for width in (None, 64, 128, 512):
                    want = _engine_mask(weights, 6, variant, hw, warps, width)
                    w = layer_plan.default_fuse_width(variant, hw.smem_per_block) if width is None else width
                    got = _model_mask(plan, variant, hw, warps, w)
                    assert got == want, (hw_name, variant, warps, width)


def test_shared_memory_is_the_engines():
    """The scatter segment's shared memory: one tile buffer, the output lists, two layers' staged
    columns (layer_plan.fuse_bytes), + the analysis' 128 B."""
    hw = load_hardware("h200")
    nest = load_nest("fused_scatter")
    cap = Workload(1.0, 1.0, 1024.0, 1024.0, 64.0, 32.0)
    an = analyse(nest, {}, Workload(32.0, 32.0, 1024.0, 1024.0, 64.0, 32.0, 8.0), hw, cap)
    assert float(an.smem_block) - 128 == layer_plan.fuse_bytes(1024, 32, True, "dedup", 64)
    assert float(an.smem_block) <= hw.smem_per_block


def test_scatter_costs_from_the_directives():
    """The analysis derives the scatter's costs from `Stage Yout smem scatter`: one buffer (the
    outputs take no shared memory of their own), the features on chip across the segment (only
    the first layer's inputs come from memory, the last layer's outputs go back), the lists
    staged once per layer and block, a store per output neuron."""
    hw = load_hardware("h200")
    # (kernel renamed: for the shipped fused_scatter.m ptxas's count replaces the estimate)
    scatter = dataclasses.replace(parse_nest(SCATTER, "s.m"), kernel="fused_scatter_copy")
    plain = parse_nest(SCATTER.replace("Stage Yout smem scatter", "Stage Yout smem"), "p.m")
    seg, rows, blocks = 8.0, 320.0, 10.0
    wl = Workload(rows, rows, 1024.0, 1024.0, 64.0, 32.0, seg)
    a, b = analyse(scatter, {}, wl, hw), analyse(plain, {}, wl, hw)
    # a changed directive changes the analysis: the scatter's buffer is Yin's
    assert float(b.smem_block) - float(a.smem_block) == 32 * 4 * 1024 - 4 * (1024 + 64 + 4)
    lists = a.tensors["Lists"]["smem"]
    assert float(lists["traffic"]) == blocks * seg * 4 * (1024 + 64 + 1)  # once per layer per tile
    assert "Lists" not in b.tensors
    # features on chip across the segment: Yout written back once (the segment's last layer)
    assert float(a.tensors["Yout"]["smem"]["traffic"]) == blocks * 32 * 1024 * 4
    # a store per output neuron per lane: 1024 / 64 per distinct column, 64 columns per layer
    stores = float(a.tensors["Yout"]["reg"]["accesses"]) / 4
    assert stores == pytest.approx(blocks * 32 * seg * 1024)
    # the scatter's extra wavefronts, instructions and waits over the same nest without it
    assert float(a.smem_wavefront_bytes) > float(b.smem_wavefront_bytes)
    assert float(a.warp_instructions) > float(b.warp_instructions)
    assert float(a.fill_latency) == pytest.approx(float(b.fill_latency) + seg * (hw.l2_latency_s + hw.smem_latency_s))
    # a warp's folds of j are held in registers until the barrier: 64 columns / 16 warps = 4
    assert float(a.regs) - float(b.regs) == 4


def test_directives_the_analysis_cannot_honour_are_errors():
    with pytest.raises(DirectiveError, match="Yin must be staged"):
        parse_nest(SCATTER.replace("Stage Yin smem", "Stage Yin l1").replace("Fuse 8", "Fuse 1"), "a.m")
    with pytest.raises(DirectiveError, match="only the outputs"):
        parse_nest(SCATTER.replace("Stage W smem double", "Stage W smem scatter"), "b.m")
    with pytest.raises(DirectiveError, match="only a shared-memory tile"):
        parse_nest(
            SCATTER.replace("Stage Yout smem scatter", "Stage Yout l2 scatter").replace("Fuse 8", "Fuse 1"), "c.m"
        )
    with pytest.raises(DirectiveError, match="Fuse F upto WIDTH"):
        parse_nest(SCATTER.replace("cols WARPS * REGS * cdiv(32, R) else", "cols else"), "d.m")
    # j split across blocks: one block's buffer would not hold the layer's outputs
    split = SCATTER.replace(
        "SpatialMap(R, R) r               # one block", "SpatialMap(R, R) r\nSpatialMap(32, 32) j #"
    )
    split = split.replace("TemporalMap(1, 1) l              # the block steps", "# (no l loop)")
    split = split.replace("Fuse 8", "Fuse 1")
    with pytest.raises(DirectiveError, match="across blocks"):
        parse_nest(split, "e.m")


def test_dedup_fused_prediction_at_1024():
    """1024 x 120, dedup: every layer in scatter segments (the engine's rule), faster than a kernel
    per layer; at 4096 no layer fuses (4096 > 1024 wide): the kernel per layer."""
    hw = load_hardware("h200")
    prof = NetworkProfile.stored(1024, 120)
    per_layer = predict(Dataflow(variant="dedup", check_every=8), prof, hw)
    fused = predict(Dataflow(dataflow="fused", fuse=8, check_every=8, variant="dedup"), prof, hw)
    assert fused.valid and fused.policy["fused_layers"] == 120
    assert fused.seconds < per_layer.seconds
    prof = NetworkProfile.stored(4096, 120)
    fused = predict(Dataflow(dataflow="fused", fuse=8, check_every=8, variant="dedup"), prof, hw)
    assert fused.policy["fused_layers"] == 0
    assert fused.seconds == pytest.approx(predict(Dataflow(variant="dedup", check_every=8), prof, hw).seconds)
