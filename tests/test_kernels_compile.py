"""Every CUDA kernel file compiles for Hopper (sm_90) with nvcc; runs on CI without a GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KERNELS = sorted((Path(__file__).parent.parent / "spdnn" / "engines" / "kernels").glob("*.cu"))


def test_kernel_files_exist():
    assert KERNELS, "no .cu files under spdnn/engines/kernels"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("kw", [1, 2, 4, 32, 44])
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_compiles_sm90(source, kw, tmp_path):
    """The engine compiles each file once per padded column length KW (-DKW=...)."""
    out = tmp_path / "tmp.cubin"
    run = subprocess.run(
        ["nvcc", "-arch=sm_90", "-cubin", f"-DKW={kw}", "-DWARPS=8", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 0


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_dag_walk_compiles_sm90_without_spills():
    """The DAG kernels' dag_walk and dag_population_ring (spdnn/dag/kernels/dag_levels.cu) build for
    sm_90 with no register spills under their launch bounds."""
    from spdnn.engines.device import ptxas_usage

    source = Path(__file__).parent.parent / "spdnn" / "dag" / "kernels" / "dag_levels.cu"
    usage = ptxas_usage(source, ["-O3"])
    for kernel in ("dag_walk1", "dag_walk4", "dag_population_ring1", "dag_population_ring4"):
        assert kernel in usage, kernel
        assert usage[kernel][1] == 0, (kernel, usage[kernel])  # spill-store bytes


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("layered", [False, True], ids=["challenge", "layered"])
@pytest.mark.parametrize("kw,stage", [(1, True), (32, True), (92, False), (184, True), (784, True)])
def test_engine_builds_compile_sm90(layered, kw, stage, tmp_path):
    """spdnn_layer.cu with the engine's own options (kernel_args.compile_options), both builds: the
    challenge's and the layered one (per-column biases; SNICIT's columns up to a dense 784-input
    layer, KW = 784, whose gathers go in chunks)."""
    from spdnn.engines.cuda import KERNEL_FILE, WARPS
    from spdnn.engines.kernel_args import KERNELS, compile_options
    from spdnn.engines.layer_plan import SCATTER_REGS

    out = tmp_path / "engine.cubin"
    options = compile_options(kw, WARPS, stage, SCATTER_REGS, layered)
    run = subprocess.run(
        ["nvcc", "-arch=sm_90", "-cubin", *options, "-o", str(out), str(KERNEL_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    cubin = out.read_bytes()
    for kernel in KERNELS.values():
        assert kernel.encode() in cubin, kernel
