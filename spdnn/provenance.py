"""Provenance recorded in every result file: versions, commit, host, date."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

from . import __version__
from .devices import gpu_info  # noqa: F401  (its home is spdnn.devices; re-exported)

_PACKAGES = ("numpy", "scipy", "pyarrow", "snakemake", "pycuda", "cupy-cuda13x", "cupy")


def built_commit() -> str | None:
    """The commit an installed copy was built from, as setuptools-scm wrote it in spdnn/_version.py
    (an abbreviated hash, with '+dirty' when the tree had changes then), or None (built without git).
    """
    try:
        from . import _version
    except ImportError:
        return None
    local = str(getattr(_version, "__version__", "")).partition("+")[2].split(".")
    commit = getattr(_version, "__commit_id__", None)  # setuptools-scm >= 9; before: the local version
    commit = commit or next((part for part in local if re.fullmatch(r"g[0-9a-f]{7,40}", part)), None)
    if not commit:
        return None
    dirty = any(re.fullmatch(r"d[0-9]{8}", part) for part in local)  # setuptools-scm's '.dYYYYMMDD'
    return commit.removeprefix("g") + ("+dirty" if dirty else "")


def git_commit() -> str | None:
    """The project's git commit (with '+dirty' when the tree has changes), or None outside git.

    A copy of the tree without .git (a cluster node, a GPU machine given a snapshot) names its
    commit in SPDNN_COMMIT, recorded as given. An installed copy (a wheel: no pyproject.toml beside
    the package, so any git repository around it is not this one's) records the commit it was built
    from (built_commit).
    """
    if os.environ.get("SPDNN_COMMIT"):
        return os.environ["SPDNN_COMMIT"].strip()
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        return built_commit()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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
