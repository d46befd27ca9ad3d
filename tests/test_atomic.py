"""Write-then-rename: leftovers of killed writers are cleared, live writers' files never touched."""

from __future__ import annotations

import os

from spdnn.io.atomic import atomic_path, remove_stale, temporary_name, write_text

from .conftest import dead_pid


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    mine = temporary_name("w.arrow")
    host = mine.split(".")[-3]
    dead = tmp_path / f".w.arrow.{host}.{dead_pid()}.tmp"
    dead.write_bytes(b"x" * 1000)
    dead_folder = tmp_path / f".w.arrow.gpus.{host}.{dead_pid()}.tmp"
    dead_folder.mkdir()
    (dead_folder / "gpu0.json").write_text("{}")
    live = tmp_path / f".w.arrow.{host}.{os.getppid()}.tmp"  # a running process's file
    live.write_text("busy")
    other_host = tmp_path / f".w.arrow.elsewhere.{dead_pid()}.tmp"  # may be alive on its own host
    other_host.write_text("remote")

    write_text(tmp_path / "w.arrow", "done")
    assert (tmp_path / "w.arrow").read_text() == "done"
    assert not dead.exists() and live.exists() and other_host.exists()
    assert dead_folder.exists()  # another stem: swept by its own writer
    assert remove_stale(tmp_path, "w.arrow.gpus") == [dead_folder] and not dead_folder.exists()


def test_failed_block_leaves_nothing(tmp_path):
    target = tmp_path / "x.json"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
