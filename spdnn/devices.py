"""What this machine has, found without a CUDA context (safe on a login node or in the Snakefile):
the GPUs (CUDA_VISIBLE_DEVICES, nvidia-smi) and the CPU (model name, the cores this process may use).

The one home of device discovery: the workflow, the config checks, the multi-GPU split, the
provenance of a result and the engines' device names ask here.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

__all__ = ["cpu_model", "default_workers", "gpu_ids", "gpu_info", "gpu_names", "visible_gpu_count"]


def _nvidia_smi(*args: str) -> str | None:
    """nvidia-smi's output for `args`, or None without a driver or when it fails (its error
    message, on stdout, is never read as a GPU)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_ids() -> list[str]:
    """Visible GPU ids: CUDA_VISIBLE_DEVICES entries if set, else 0..count-1 from `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    listing = _nvidia_smi("-L") or ""
    return [str(i) for i in range(sum(1 for line in listing.splitlines() if line.startswith("GPU ")))]


def visible_gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what `nvidia-smi -L` lists, else 0."""
    return len(gpu_ids())


def gpu_names() -> list[str]:
    """The GPUs' names as nvidia-smi prints them ("NVIDIA H200", ...), in its order; [] without a driver."""
    listing = _nvidia_smi("--query-gpu=name", "--format=csv,noheader") or ""
    return [line.strip() for line in listing.splitlines() if line.strip()]


def gpu_info() -> dict | None:
    """GPU models, driver and CUDA version as nvidia-smi reports them (no CUDA context); None without one."""
    query = _nvidia_smi("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
    if query is None:
        return None
    header = _nvidia_smi() or ""
    gpus = [
        dict(zip(("name", "driver", "memory"), (part.strip() for part in line.split(","))))
        for line in query.splitlines()
        if line.strip()
    ]
    cuda = next(
        (line.split("CUDA Version:")[1].split()[0] for line in header.splitlines() if "CUDA Version:" in line), None
    )
    return {"gpus": gpus, "driver": gpus[0]["driver"] if gpus else None, "cuda_version": cuda}


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux) and its core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"
