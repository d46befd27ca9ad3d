"""Checksum files: a cache file is trusted only with a sidecar holding its sha256 and size.

One mechanism for every cache (the layered Arrow cache in `cache`, the DAG cache in
`spdnn.dag.cache`): `checksummed_output` writes the file atomically and then its sidecar,
`checksum_problem` says why a file cannot be trusted, and `verify_checksum` raises a
DataError naming the file and removes the sidecar, so a damaged file is never trusted
again and the next run rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .atomic import atomic_path, write_text
from .errors import DataError
from .names import checksum_file

# A check of a file's content beyond size and sha256 (e.g. "is it an Arrow file?"): a problem or None
Probe = Callable[[Path], str | None]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar holding a cache file's content sha256 and size, written after the file itself."""
    return Path(checksum_file(os.fspath(path)))


@contextlib.contextmanager
def checksummed_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `output` to; rename it onto `output`, then write its sidecar.

    The old sidecar goes first, so a file without a matching sidecar (a run killed between
    the two renames, a damaged disk) is never trusted: `checksum_problem` reports it.
    """
    sidecar = checksum_path(output)
    sidecar.unlink(missing_ok=True)
    with atomic_path(output) as tmp:
        yield tmp
        digest, size = sha256_file(tmp), tmp.stat().st_size
    write_text(sidecar, json.dumps({"sha256": digest, "size": size}) + "\n")


def checksum_problem(path: str | os.PathLike, full: bool = True, probe: Probe | None = None) -> str | None:
    """Why a file cannot be trusted, or None: missing, no or unreadable sidecar, size differing
    from it, `probe`'s problem (checked before the sha256, which is the expensive part), or the
    sha256 differing. Without `full`, the sha256 is checked only when the file was modified
    after its sidecar was written (a cheap check before every run; Snakemake touches both
    outputs of a job in order, which keeps the file the older one)."""
    path = Path(path)
    sidecar = checksum_path(path)
    if not path.exists():
        return "missing"
    if not sidecar.exists():
        return "no checksum file beside it (an interrupted write?)"
    try:
        expected = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"unreadable checksum file {sidecar.name}"
    if not isinstance(expected, dict):
        return f"unreadable checksum file {sidecar.name}"
    size = path.stat().st_size
    if size != expected.get("size"):
        return f"size {size} differs from the recorded {expected.get('size')}"
    if probe is not None and (problem := probe(path)) is not None:
        return problem
    if full or path.stat().st_mtime_ns > sidecar.stat().st_mtime_ns:
        actual = sha256_file(path)
        if actual != expected.get("sha256"):
            return f"content sha256 {actual[:16]}... differs from the recorded {str(expected.get('sha256'))[:16]}..."
    return None


def verify_checksum(path: str | os.PathLike, full: bool = True, probe: Probe | None = None) -> None:
    """Raise DataError naming the file if `checksum_problem` finds one, after removing its sidecar:
    a file without one is never trusted again, and the next run rebuilds it."""
    problem = checksum_problem(path, full, probe)
    if problem is not None:
        checksum_path(path).unlink(missing_ok=True)
        raise DataError(
            str(path), None, f"damaged cache file ({problem}); removed its checksum file: re-run to rebuild it"
        )
