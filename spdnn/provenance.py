"""Provenance recorded in every result file: versions, commit, host, date."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from . import __version__

_PACKAGES = ("numpy", "scipy", "pyarrow", "snakemake", "pycuda", "cupy-cuda13x", "cupy")


def git_commit() -> str | None:
    """The project's git commit (with '+dirty' when the tree has changes), or None outside git.

    A copy of the tree without .git (a cluster node, a GPU machine given a snapshot) names its
    commit in SPDNN_COMMIT, recorded as given.
    """
    if os.environ.get("SPDNN_COMMIT"):
        return os.environ["SPDNN_COMMIT"].strip()
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def gpu_info() -> dict | None:
    """GPU models, driver and CUDA version as nvidia-smi reports them (no CUDA context); None without one."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [dict(zip(("name", "driver", "memory"), (part.strip() for part in line.split(","))))
            for line in query.stdout.splitlines() if line.strip()]
    cuda = next((line.split("CUDA Version:")[1].split()[0] for line in header.splitlines() if "CUDA Version:" in line),
                None)
    return {"gpus": gpus, "driver": gpus[0]["driver"] if gpus else None, "cuda_version": cuda}


def provenance() -> dict:
    """A dict describing what produced a result (the device itself is added by the engine)."""
    return {
        "spdnn_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "host": platform.node(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "platform": platform.platform(),
        "gpu": gpu_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
