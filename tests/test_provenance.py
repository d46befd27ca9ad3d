"""Provenance: the commit recorded in result files, inside a checkout and in a copy without .git."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from spdnn.provenance import git_commit, provenance


def test_commit_from_the_checkout(monkeypatch):
    monkeypatch.delenv("SPDNN_COMMIT", raising=False)
    if shutil.which("git") is None or not (Path(__file__).resolve().parents[1] / ".git").exists():
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", git_commit() or "")


def test_commit_named_by_the_environment(monkeypatch):
    """A snapshot without .git (the GPU machine's copy) records the commit it was given."""
    monkeypatch.setenv("SPDNN_COMMIT", "0123abcd\n")
    assert git_commit() == "0123abcd"
    assert provenance()["git_commit"] == "0123abcd"
