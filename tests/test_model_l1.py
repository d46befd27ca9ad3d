"""The L1 term of the cost model (issue 18): the gather kernel's cached reads cost their load
wavefronts through L1 (an H200 profile found its narrow layers L1-bound, 2026-12-04), with the
clocks per wavefront from validate_model's microbenchmark, whose kernels compile here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spdnn.model.analysis import Workload, analyse, load_wavefronts
from spdnn.model.cost import combine, time_terms
from spdnn.model.directives import Dataflow
from spdnn.model.hardware import load_hardware

ROOT = Path(__file__).parent.parent


def test_cached_loads_do_not_pack_registers():
    """Through L1 a uniform 16-byte load returns one register per lane a wavefront (4), from
    shared memory two (2); a gather is one wavefront either way."""
    assert load_wavefronts(16.0, 32.0, cached=True) == 4
    assert load_wavefronts(16.0, 32.0) == 2
    assert load_wavefronts(4.0, 1.0, cached=True) == 1
    assert load_wavefronts(8.0, 32.0, cached=True) == 2
    assert load_wavefronts(16.0, 1.0, cached=True) == 4  # distinct: 512 B through the banks


def _gather(warps: int = 8) -> Dataflow:
    return Dataflow(dataflow="gather", warps=warps, check_every=8)


def test_gather_l1_wavefronts_by_hand():
    """One tile of 32 rows, 64 columns of KW = 32 (gather.m): per column a warp's 32 gathers (one
    wavefront each) and 16 uniform LDG.128 of the column's indices and values (4 each): 96; 64
    columns: 6144, plus one wavefront per 128-byte line filled from L2."""
    hw = load_hardware("h200")
    df = _gather()
    an = analyse(df.nest(), df.params(), Workload(32.0, 32.0, 64.0, 64.0, 64.0, 32.0, 1.0), hw)
    fills = sum(float(an.tensors[t]["smem"]["traffic"]) for t in ("W", "Yin"))
    assert fills > 0
    assert float(an.l1_wavefronts) == pytest.approx(64 * (32 + 16 * 4) + fills / 128.0)


def test_fused_segments_read_nothing_through_l1():
    """The fused segments stage features and columns in shared memory: no L1 wavefronts."""
    hw = load_hardware("h200")
    df = Dataflow(dataflow="fused", warps=16, fuse=8, check_every=8)
    an = analyse(df.nest(), df.params(), Workload(32.0, 32.0, 64.0, 64.0, 64.0, 32.0, 8.0), hw)
    assert float(an.l1_wavefronts) == 0.0
    assert float(an.smem_wavefront_bytes) > 0.0


def test_l1_bounds_a_narrow_layer_of_many_rows():
    """A 256-wide layer of 60000 rows (the 4096 network's merged layers after the first): its
    features (61 MB) stay in L2 and its tiles in L1, so the time is L1's; it scales with the
    clocks per wavefront and sits above issue, L2 and DRAM."""
    hw = load_hardware("h200")
    df = _gather()
    wl = Workload(60000.0, 60000.0, 256.0, 256.0, 256.0, 32.0, 1.0)
    an = analyse(df.nest(), df.params(), wl, hw)
    t = time_terms(hw, an, wl)
    assert t["t_l1"] > max(t["t_issue"], t["t_l2"], t["t_dram"], t["t_fma"])
    per_column = 32 + 16 * 4
    columns = 60000 / 32 * 256
    assert float(t["t_l1"]) >= columns * per_column * hw.l1_wavefront_cycles / (hw.clock_hz * hw.sms)
    slow = replace(hw, l1_wavefront_cycles=2 * hw.l1_wavefront_cycles)
    t2 = time_terms(slow, analyse(df.nest(), df.params(), wl, slow), wl)
    assert float(t2["t_l1"]) == pytest.approx(2 * float(t["t_l1"]))
    assert float(combine(t2, False)[1]) > float(combine(t, False)[1])


def test_validation_runs_without_the_l1_microbenchmark_use_the_preset():
    """Runs recorded before the L1 microbenchmark existed keep the preset's clocks per wavefront;
    newer runs use their own."""
    from spdnn.model.validation import micro_constants

    base = load_hardware("h200", calibrated=False)
    cal = dict(launch_s=6e-6, kernel_min_s=3e-6, sync_s=5e-5, copy_bandwidth=4.2e12)
    assert micro_constants({"calibration": cal}, base)["l1_wavefront_cycles"] == base.l1_wavefront_cycles
    cal["l1_gather_cycles"] = 1.3
    assert micro_constants({"calibration": cal}, base)["l1_wavefront_cycles"] == 1.3


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_microbenchmark_kernels_compile_sm90(tmp_path):
    """validate_model's microbenchmarks (the L1 gather and broadcast among them) build for sm_90."""
    spec = importlib.util.spec_from_file_location("validate_model", ROOT / "benchmarks" / "validate_model.py")
    vm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vm)  # type: ignore[union-attr]
    src = tmp_path / "micro.cu"
    src.write_text(vm.MICRO_SRC)
    out = tmp_path / "micro.cubin"
    run = subprocess.run(
        ["nvcc", "-arch=sm_90", "-cubin", "-o", str(out), str(src)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    for kernel in (b"l1_gather", b"l1_broadcast", b"empty_kernel"):
        assert kernel in out.read_bytes()


def test_l1_term_vectorises():
    """The explorer's arrays: one analysis of many designs gives one L1 time each."""
    hw = load_hardware("h200")
    df = _gather()
    n = np.array([3200.0, 32000.0, 60000.0])
    wl = Workload(n, n, 256.0, 256.0, 256.0, 32.0, 1.0)
    t = time_terms(hw, analyse(df.nest(), df.params(), wl, hw), wl)["t_l1"]
    assert t.shape == (3,) and np.all(np.diff(t) > 0)
