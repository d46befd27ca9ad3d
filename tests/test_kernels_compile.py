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
