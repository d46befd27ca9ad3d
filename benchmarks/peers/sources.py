"""Fetch a peer at its pinned commit into an ignored folder, patch it, build it.

Layout under the peers root (default .peers/, ignored by git; it travels to the GPU machine):
  src/<name>/   the exported tree with our patches applied, and .spdnn-source.json saying so
  bin/<name>    the built program (what the benchmark runs)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .recipes import PATCHES, Source

STAMP = ".spdnn-source.json"


def patch_digest(patches: tuple[str, ...], folder: Path = PATCHES) -> list[dict]:
    """Name and sha256 of every patch, in order: what a tree's stamp must match."""
    return [{"file": p, "sha256": hashlib.sha256((folder / p).read_bytes()).hexdigest()} for p in patches]


def _git_env(tree: Path) -> dict:
    # Stop git from finding the project's repository above the peers folder: `git apply`
    # inside another repository silently skips paths outside the current directory.
    return {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.resolve().parent)}


def apply_patch(tree: Path, patch: Path) -> None:
    """Apply one unified diff (paths a/..., b/...) to a plain folder; an error if it does not apply."""
    env = _git_env(tree)
    for args in (["--check"], []):
        done = subprocess.run(
            ["git", "apply", *args, str(patch.resolve())], cwd=tree, env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{patch.name} does not apply to {tree}: {done.stderr.strip()}")


def export(source: Source, root: Path, mirror: Path | None = None, patches_dir: Path = PATCHES) -> Path:
    """src/<name> at the pinned commit with the patches applied; kept when its stamp matches.

    mirror: a git directory holding the commit (a clone or bare mirror); without it the
    repository is cloned from GitHub into a temporary folder first.
    """
    tree = root / "src" / source.name
    stamp = {
        "repo": source.repo,
        "commit": source.commit,
        "paths": list(source.paths),
        "patches": patch_digest(source.patches, patches_dir),
    }
    if (tree / STAMP).is_file() and json.loads((tree / STAMP).read_text()) == stamp:
        return tree
    if tree.exists():
        shutil.rmtree(tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        git_dir = mirror
        if git_dir is None:
            git_dir = Path(tmp) / "clone"
            subprocess.run(["git", "clone", "--quiet", "--no-checkout", source.url, str(git_dir)], check=True)
        archive = subprocess.run(
            ["git", "-C", str(git_dir), "archive", "--format=tar", source.commit, *source.paths],
            check=True,
            capture_output=True,
        ).stdout
        tree.mkdir()
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    for name in source.patches:
        apply_patch(tree, patches_dir / name)
    (tree / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    return tree


def build(source: Source, root: Path, log: Path | None = None) -> Path:
    """Build the exported tree and copy its program to bin/<name>; the build's output goes to `log`."""
    tree = root / "src" / source.name
    done = subprocess.run(["bash", "-c", source.build], cwd=tree, capture_output=True, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {source.build}\n{done.stdout}{done.stderr}")
    if done.returncode:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"building {source.name} failed ({done.returncode}):\n{tail}")
    binary = root / "bin" / source.name
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tree / source.binary, binary)
    return binary


def stamp_of(source: Source, root: Path) -> dict | None:
    """What src/<name> was exported and patched from, or None when it is absent."""
    path = root / "src" / source.name / STAMP
    return json.loads(path.read_text()) if path.is_file() else None
