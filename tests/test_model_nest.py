"""Directive files: parse errors name the file and line; the analysis of small loop nests equals
reuse computed by hand; changing a directive changes the analysis where it should."""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.model import Dataflow, NetworkProfile, load_hardware, parse_directives
from spdnn.model.analysis import Workload, analyse
from spdnn.model.cost import layer_cost, predict
from spdnn.model.nest import DIRECTIVE_DIR, DirectiveError, load_nest, parse_nest


@pytest.fixture(scope="module")
def hw():
    return load_hardware("h100-sxm", calibrated=False)


# One warp of 32 lanes, one column per lane; every lane steps through k and r.
K_OUTER = """Kernel tiny
Cluster(1) warp
Cluster(32) lane
SpatialMap(1, 1) j
TemporalMap(1, 1) k
TemporalMap(1, 1) r
"""
R_OUTER = K_OUTER.replace("TemporalMap(1, 1) k\nTemporalMap(1, 1) r", "TemporalMap(1, 1) r\nTemporalMap(1, 1) k")
SMALL = Workload(n=4.0, a=4.0, win=64.0, wout=32.0, ucols=32.0, kw=8.0)  # 4 rows, 32 columns of 8 nonzeros


def test_hand_reuse_weights_stationary(hw):
    """k outer, r inner: a lane keeps its weight while it steps through the 4 rows.

    lanes = 32 (one column each), steps per lane = 8 k x 4 r = 32, MACs = 32 x 32 = 4 x 32 x 8.
    W (depends on j, k): refilled when k moves, kept across r: 8 fills per lane, temporal reuse
    32 / 8 = 4; 32 lanes x 8 x 8 B = 2048 B = all of W once.
    Yin (r, j, k): a new value every step: 32 lanes x 32 x 4 B = 4096 B.
    Yout (r, j): r moves innermost, so the accumulator changes every step: 32 write-backs per lane
    for 4 distinct outputs: 28 partial-sum re-reads per lane (k is outside r: output not stationary).
    """
    an = analyse(parse_nest(K_OUTER), {}, SMALL, hw)
    t = an.tensors
    assert float(an.macs) == 4 * 32 * 8
    assert float(t["W"]["reg"]["reuse"]) == 4 and float(t["W"]["reg"]["traffic"]) == 2048
    assert float(t["Yin"]["reg"]["traffic"]) == 4096
    assert float(t["Yout"]["reg"]["reuse"]) == 1 and float(t["Yout"]["reg"]["traffic"]) == 32 * 32 * 4
    assert float(t["Yout"]["reg"]["partial_reads"]) == 32 * 28 * 4


def test_hand_reuse_output_stationary(hw):
    """Swapping the two TemporalMaps (r outer, k inner) moves the reuse from W to Yout: W is refilled
    every step (32 fills, reuse 1, 8192 B); the accumulator stays over k (4 write-backs per lane,
    reuse 8, no partial sums); Yin is unchanged."""
    an = analyse(parse_nest(R_OUTER), {}, SMALL, hw)
    t = an.tensors
    assert float(t["W"]["reg"]["reuse"]) == 1 and float(t["W"]["reg"]["traffic"]) == 8192
    assert float(t["Yout"]["reg"]["reuse"]) == 8 and float(t["Yout"]["reg"]["traffic"]) == 32 * 4 * 4
    assert float(t["Yout"]["reg"]["partial_reads"]) == 0
    assert float(t["Yin"]["reg"]["traffic"]) == 4096


def test_hand_multicast_and_reduction(hw):
    """Lanes split rows (r): the weight each needs is the same, one broadcast serves 32 lanes
    (multicast 32). Lanes split k instead (8 of them active): partial sums of 8 lanes meet,
    2 x (8 - 1) x the 4 x 32 x 4 B of outputs through registers (shuffles), and the order of
    the sum is no longer the engine's serial one."""
    rows = Workload(n=32.0, a=32.0, win=64.0, wout=32.0, ucols=32.0, kw=8.0)
    split_r = "Cluster(1) warp\nCluster(32) lane\nSpatialMap(1, 1) r\nTemporalMap(1, 1) j\nTemporalMap(8, 8) k\n"
    an = analyse(parse_nest(split_r), {}, rows, hw)
    assert float(an.tensors["W"]["reg"]["multicast"]) == 32
    assert float(an.tensors["W"]["reg"]["traffic"]) == 32 * 8 * 8  # W read once for the warp
    assert float(an.tensors["Yin"]["reg"]["multicast"]) == 1
    assert an.exact_order and float(an.tensors["Yout"]["reg"]["reduction"]) == 0
    split_k = "Cluster(1) warp\nCluster(32) lane\nSpatialMap(1, 1) k\nTemporalMap(1, 1) j\nTemporalMap(1, 1) r\n"
    an = analyse(parse_nest(split_k), {}, SMALL, hw)
    assert not an.exact_order
    assert float(an.tensors["Yout"]["reg"]["reduction"]) == 2 * 7 * 4 * 32 * 4
    assert float(an.level_bytes["reg"]) == 8 * float(an.macs) + 2 * 7 * 4 * 32 * 4


def test_hand_block_tile_stationary_across_folds(hw):
    """A block staging its rows in shared memory (dense: every input neuron) keeps the tile while
    its warps fold through the columns: one fill per block; gathered through L1 instead, the block
    reads only the lines its columns touch, once (compulsory), the rest hits."""
    staged = """SpatialMap(8, 8) r
Cluster(2) warp
SpatialMap(1, 1) j
Cluster(32) lane
SpatialMap(1, 1) r
TemporalMap(Sz(k), Sz(k)) k
Stage Yin smem
"""
    wl = Workload(n=16.0, a=16.0, win=64.0, wout=32.0, ucols=32.0, kw=1.0)
    an = analyse(parse_nest(staged), {}, wl, hw)
    y = an.tensors["Yin"]["smem"]
    assert float(an.blocks) == 2  # two tiles of 8 rows
    assert float(y["fills_per_block"]) == 1 and float(y["traffic"]) == 2 * 8 * 64 * 4
    cached = analyse(parse_nest(staged.replace("Stage Yin smem\n", "")), {}, wl, hw)
    c = cached.tensors["Yin"]["smem"]
    assert float(c["traffic"]) == 2 * 8 * 32 * 4  # 32 columns x 1 nonzero: 32 of the 64 lines
    assert float(c["hit"]) == 1.0


ERRORS = [
    (
        "SpatialMap(2, 1) r\nCluster(8) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\n",
        1,
        "offset must equal size",
    ),
    ("Cluster(8) warp\nSpatialMap(1,1) q\n", 2, "unknown dimension"),
    ("Cluster(32) lane\nCluster(8) warp\n", 2, "levels go block, warp, lane"),
    ("Cluster(4) warp\nSpatialMap(1,1) j\nCluster(16) lane\n", 3, "a warp has 32 lanes"),
    ("Cluster(4) warp\nSpatialMap(1,1) j\nTemporalMap(1,1) j\n", 3, "already mapped at this level"),
    ("SpatialMap(1,1) l\n", 1, "layers cannot run side by side"),
    (
        "Cluster(4) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\nTemporalMap(1,1) l\n",
        5,
        "a layer would start before the previous one finished",
    ),
    ("Cluster(WARPZ) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\n", 1, "unknown name"),
    ("Cluster(4) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\nStage Yout l1\n", 5, "not write-back"),
    (
        "Cluster(4) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\nStage W smem\nStage W l2\n",
        6,
        "contradictory",
    ),
    ("Cluster(4) warp\nSpatialMap(1,1) j\nCluster(32) lane\nSpatialMap(1,1) r\nFuse 8\n", 5, "Stage Yin smem"),
    ("SpatialMap r 32 lane\n", 1, "needs the form"),
    ("Cluster(4) warp\nCluster(32) lane\nSpatialMap(1,1) r\n", 1, "no SpatialMap"),
    ("Cluster(4) warp\nSpatialMap(1,1) j\n", None, "no Cluster(...) lane"),
    ("Frobnicate 3\n", 1, "unknown directive"),
]


@pytest.mark.parametrize("text,line,message", ERRORS)
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(DirectiveError) as err:
        parse_nest(text, "bad.m")
    assert err.value.line == line
    assert message in str(err.value)
    assert str(err.value).startswith(f"bad.m:{line}:" if line else "bad.m:")


def test_value_errors_name_the_line(hw):
    """What depends on values (threads, shared memory) is checked by the analysis: the design is
    invalid and its reason names the directive's line."""
    text = (DIRECTIVE_DIR / "gather.m").read_text().replace("Param WARPS 16", "Param WARPS 64")
    df = parse_directives(text, "wide.m")
    p = predict(df, NetworkProfile.stored(1024, 12), hw)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("Cluster(WARPS) warp"))
    assert not p.valid and f"line {line}: more threads per block" in p.reason


def test_cli_reports_a_bad_file(tmp_path, capsys):
    from spdnn.cli import main

    bad = tmp_path / "bad.m"
    bad.write_text("Cluster(8) warp\nSpatialMap(1, 2) j\n")
    with pytest.raises(SystemExit) as ex:
        main(["model", "predict", "--neurons", "1024", "--layers", "12", "--directives", str(bad)])
    assert ex.value.code == 2
    assert f"{bad}:2: SpatialMap(1, 2) j: offset must equal size" in capsys.readouterr().err


def _predict_text(text, hw, n=1024, layers=24):
    return predict(parse_directives(text, "x.m"), NetworkProfile.stored(n, layers, 6000), hw)


GATHER = (DIRECTIVE_DIR / "gather.m").read_text()
FUSED = (DIRECTIVE_DIR / "fused.m").read_text()
SMEM = (DIRECTIVE_DIR / "smem.m").read_text()


def test_engine_files_parse_back_to_the_engine_kernels():
    assert parse_directives(GATHER) == Dataflow(dataflow="gather", warps=16)
    assert parse_directives(FUSED).dataflow == "fused" and not parse_directives(FUSED).custom
    # the same loop nest with other knob values is still the engine's kernel; another nest is not
    assert parse_directives(GATHER.replace("Param GF 16", "Param GF 4")).grid_factor == 4
    changed = parse_directives(GATHER.replace("TemporalMap(Sz(k), Sz(k)) k", "TemporalMap(1, 1) k"))
    assert changed.custom and changed.dataflow == "gather"
    with pytest.raises(ValueError, match="not one of the engine's kernels"):
        changed.engine_options()


def test_changing_any_directive_changes_the_analysis(hw):
    """Each edit of the engine's files moves what it should (and the prediction)."""
    base = _predict_text(GATHER, hw)
    wl = Workload(n=60000.0, a=30000.0, win=64.0, wout=64.0, ucols=64.0, kw=32.0)
    an0 = analyse(load_nest("gather"), {}, wl, hw)

    # one nonzero at a time instead of all KW in flight: fewer registers, less in flight, 32x the steps
    one = parse_nest(GATHER.replace("TemporalMap(Sz(k), Sz(k)) k", "TemporalMap(1, 1) k"))
    an1 = analyse(one, {}, wl, hw)
    assert float(an1.regs) < float(an0.regs) and float(an1.inflight_warp) < float(an0.inflight_warp)
    assert float(an1.warp_steps) == 32 * float(an0.warp_steps)
    assert (
        _predict_text(GATHER.replace("TemporalMap(Sz(k), Sz(k)) k", "TemporalMap(1, 1) k"), hw).seconds > base.seconds
    )

    # the grid's SpatialMap over rows removed: one tile's blocks do all rows, far less parallel
    no_grid = GATHER.replace("SpatialMap(32, 32) r\n", "")
    an2 = analyse(parse_nest(no_grid), {}, wl, hw)
    assert float(an2.blocks) < float(an0.blocks) / 100
    assert _predict_text(no_grid, hw).seconds > 3 * base.seconds

    # the lanes' SpatialMap removed: an error naming the Cluster(32) lane line
    line = next(i for i, t in enumerate(GATHER.splitlines(), 1) if t.startswith("Cluster(32) lane"))
    with pytest.raises(DirectiveError, match=f"x.m:{line}: .*no SpatialMap"):
        parse_directives(GATHER.replace("SpatialMap(1, 1) r ", "# "), "x.m")

    # warps per block: threads, blocks per SM
    an3 = analyse(load_nest("gather"), {"WARPS": 4.0}, wl, hw)
    assert float(an3.threads) == 128 and float(an3.bsm) > float(an0.bsm)

    # Stage Yin smem in the smem kernel vs through L1: the L2 traffic and shared memory change
    wide = Workload(n=60000.0, a=30000.0, win=1024.0, wout=1024.0, ucols=64.0, kw=4.0)  # a block touches 1/4
    s0 = layer_cost(hw, parse_nest(SMEM), {"R": 8.0}, wide)
    s1 = layer_cost(hw, parse_nest(SMEM.replace("Stage Yin smem\n", "")), {"R": 8.0}, wide)
    assert float(s0["smem_block"]) > float(s1["smem_block"]) == 128
    assert float(s0["l2"]) != float(s1["l2"])

    # fused: a launch per layer (TemporalMap(1, 1) l at the grid) reloads the tile every layer
    seg = Workload(n=60000.0, a=30000.0, win=64.0, wout=64.0, ucols=64.0, kw=32.0, seg=8.0)
    f0 = analyse(load_nest("fused"), {}, seg, hw)
    f1 = analyse(parse_nest(FUSED.replace("TemporalMap(Sz(l), Sz(l)) l", "TemporalMap(1, 1) l", 1)), {}, seg, hw)
    assert float(f1.launches) == 8 and float(f0.launches) == 1
    assert float(f1.tensors["Yin"]["smem"]["traffic"]) == pytest.approx(8 * float(f0.tensors["Yin"]["smem"]["traffic"]))

    # W not double-buffered: the block waits for the columns of every layer
    f2 = analyse(parse_nest(FUSED.replace("Stage W smem double", "Stage W smem")), {}, seg, hw)
    assert float(f2.fill_latency) > float(f0.fill_latency) and float(f2.smem_block) < float(f0.smem_block)


def test_policy_lines_do_not_touch_the_loop_nest(hw):
    """Moving the policy lines changes nothing; moving a map to another level changes the nest."""
    lines = GATHER.splitlines()
    policy = [t for t in lines if t.split()[:1] in (["Compact"], ["Batch"], ["Variant"], ["Fuse"])]
    rest = [t for t in lines if t not in policy]
    moved = "\n".join(policy + rest) + "\n"
    assert _predict_text(moved, hw).seconds == _predict_text(GATHER, hw).seconds
    # the row split from the lanes to the warps (and the column split to the lanes): a different nest
    swap = {"SpatialMap(1, 1) j": "SpatialMap(1, 1) r", "SpatialMap(1, 1) r": "SpatialMap(1, 1) j"}
    swapped = "\n".join(swap.get(t.split("#")[0].strip(), t) for t in lines) + "\n"
    assert parse_nest(swapped).structure() != parse_nest(GATHER).structure()
    assert _predict_text(swapped, hw).seconds != _predict_text(GATHER, hw).seconds


def test_load_nest_errors():
    with pytest.raises(DirectiveError, match="cannot read"):
        load_nest("/nonexistent/x.m")
    for name in ("gather", "fused", "smem"):
        assert load_nest(name).kernel == name
    assert np.isfinite(
        float(parse_nest("Cluster(1) warp\nCluster(32) lane\nSpatialMap(1,1) r\n").sections[2].maps[0].size({}))
    )
