"""Files that no longer follow from their inputs are removed, never left looking current.

Two cases: a damaged cache file (its rebuild must also rerun everything computed from it, or
Snakemake, seeing those results present, would do nothing), and a step about to recompute a
result (the merged result and the tables made from the old one must not survive a failure).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def invalidate(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove `paths` (files made from what is about to change); returns those that existed."""
    removed = []
    for path in map(Path, paths):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def rebuild_damaged_caches(caches: Iterable[str | os.PathLike], dependants: dict[str, list[str]]) -> list[str]:
    """Quick-check each existing cache file; remove a damaged one, its checksum file and every
    file matching its `dependants` glob patterns, so that the run rebuilds all of them.
    Returns one message per damaged cache."""
    from .io.cache import cache_problem, checksum_path

    messages = []
    for cache in map(str, caches):
        if not Path(cache).exists():
            continue
        problem = cache_problem(cache, full=False)
        if problem is None:
            continue
        checksum_path(cache).unlink(missing_ok=True)
        Path(cache).unlink(missing_ok=True)
        gone = invalidate(p for pattern in dependants.get(cache, []) for p in glob.glob(pattern))
        messages.append(
            f"cache file {cache} is damaged ({problem}); it will be rebuilt, and the "
            f"{len(gone)} results made from it computed again"
        )
    return messages
