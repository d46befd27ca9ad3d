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
def test_dag_walk_compiles_sm90_without_spills(tmp_path):
    """The DAG kernels' dag_walk (spdnn/dag/kernels/dag_levels.cu) builds for sm_90 with no register spills
    under its 256-thread launch bounds."""
    source = Path(__file__).parent.parent / "spdnn" / "dag" / "kernels" / "dag_levels.cu"
    out = tmp_path / "dag.cubin"
    run = subprocess.run(
        ["nvcc", "-arch=sm_90", "-cubin", "-O3", "-Xptxas", "-v", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    cubin = out.read_bytes()
    for kernel in ("dag_walk1", "dag_walk4"):
        assert kernel.encode() in cubin, kernel
        report = run.stderr.split(f"Compiling entry function '{kernel}'")[1].split("Compiling entry function")[0]
        assert "0 bytes spill stores" in report, report
