"""Write-then-rename, so an interrupted step never leaves a file that looks finished.

Temporary names carry the host and process id (`.<name>.<host>.<pid>.tmp`): a later writer of
the same file removes the leftovers of processes on this host that no longer exist (a run
killed with SIGKILL cannot clean up after itself), and never touches a live writer's file,
nor one of another host sharing the folder (a cluster file system).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temporary_name(stem: str) -> str:
    """A hidden name unique to this host and process, that `remove_stale` recognises."""
    return f".{stem}.{_HOST}.{os.getpid()}.tmp"


def remove_stale(folder: str | os.PathLike, stem: str) -> list[Path]:
    """Remove temporaries of `stem` in `folder` left by dead processes of this host; returns them."""
    pattern = re.compile(rf"\.{re.escape(stem)}\.{re.escape(_HOST)}\.(\d+)\.tmp")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(folder).iterdir():
            match = pattern.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, final.name)
    tmp = final.with_name(temporary_name(final.name))
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
