"""spdnn.fetch against a real HTTP server on 127.0.0.1 serving the real challenge sample.

The handler below supports Range requests (SimpleHTTPRequestHandler does not) and can
simulate faults: 503s (or any status), a connection cut mid-body, a server that ignores
Range, one that sends no Content-Length or chunks without the last one, one that trickles
a byte at a time and one that never answers.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spdnn import challenge
from spdnn.fetch import (
    BadLocation,
    FetchError,
    FetchRecord,
    check_gzip,
    check_truth,
    fetch,
    main,
    record_manifest,
    url_for,
)

from .conftest import SAMPLE, Server, serve

WEIGHTS = challenge.weights_archive(1024)
INPUTS = challenge.inputs_file(1024)
TRUTH = challenge.truth_file(1024, 120)
FAST = dict(backoff=0.001, stall_timeout=10, progress=False)


@pytest.fixture
def server() -> Iterator[Server]:
    """The real sample, served as is (layout: <root>/synthetic/sparsechallenge_2019/...)."""
    yield from serve(SAMPLE.parent.parent)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(dest: Path) -> list[Path]:
    return [p for p in (dest, dest.with_name(dest.name + ".part")) if p.exists()]


def test_sample_present() -> None:
    for rel in (WEIGHTS, INPUTS, TRUTH):
        assert (SAMPLE / rel).is_file(), rel


def test_plain_download_and_manifest(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data" / WEIGHTS
    rec = fetch(url_for(server.base, WEIGHTS), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / WEIGHTS).read_bytes()
    assert not dest.with_name(dest.name + ".part").exists()
    assert rec.size == dest.stat().st_size and rec.sha256 == _sha(SAMPLE / WEIGHTS)
    manifest = tmp_path / "data" / "manifest.json"
    record_manifest(manifest, rec)
    entry = json.loads(manifest.read_text())[WEIGHTS]
    assert entry["sha256"] == _sha(SAMPLE / WEIGHTS)
    assert entry["size"] == (SAMPLE / WEIGHTS).stat().st_size
    assert entry["url"] == server.base + WEIGHTS and entry["fetched_at"]
    # A second record updates in place and keeps the first.
    rec2 = fetch(url_for(server.base, TRUTH), tmp_path / "data" / TRUTH, **FAST)
    record_manifest(manifest, rec2)
    assert set(json.loads(manifest.read_text())) == {WEIGHTS, TRUTH}


def test_configured_sha256_and_size_accepted(server: Server, tmp_path: Path) -> None:
    src = SAMPLE / INPUTS
    rec = fetch(
        url_for(server.base, INPUTS), tmp_path / "x.gz", sha256=_sha(src).upper(), size=src.stat().st_size, **FAST
    )
    assert rec.sha256 == _sha(src)


def test_transient_503_is_retried(server: Server, tmp_path: Path) -> None:
    server.faults.fail_first = 2
    dest = tmp_path / "w.tar.gz"
    fetch(url_for(server.base, WEIGHTS), dest, retries=3, **FAST)
    assert dest.read_bytes() == (SAMPLE / WEIGHTS).read_bytes()
    assert [r[2] for r in server.faults.requests] == [503, 503, 200]


def test_persistent_503_gives_up_clearly(server: Server, tmp_path: Path) -> None:
    server.faults.fail_first = 100
    url = url_for(server.base, TRUTH)
    with pytest.raises(FetchError, match=re.escape(url) + ".*3 attempts.*503"):
        fetch(url, tmp_path / "t.tsv", retries=2, **FAST)
    assert len(server.faults.requests) == 3


def test_cut_connection_resumes_with_range(server: Server, tmp_path: Path) -> None:
    cut = 1_000_003
    server.faults.cut_after = cut
    dest = tmp_path / "w.tar.gz"
    fetch(url_for(server.base, WEIGHTS), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / WEIGHTS).read_bytes()
    assert [(r[1], r[2]) for r in server.faults.requests] == [(None, 200), (f"bytes={cut}-", 206)]


def test_repeated_truncation_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    server.faults.cut_after, server.faults.cut_times = 0, 100  # every response empty
    url = url_for(server.base, INPUTS)
    with pytest.raises(FetchError, match=re.escape(url) + ".*truncated"):
        fetch(url, tmp_path / "i.gz", retries=2, **FAST)


def test_server_ignoring_range_restarts(server: Server, tmp_path: Path) -> None:
    server.faults.ignore_range = True
    server.faults.cut_after = 500_000
    dest = tmp_path / "w.tar.gz"
    # A stale, wrong .part too: a 200 answer to the Range must overwrite it, not append.
    dest.with_name(dest.name + ".part").write_bytes(b"garbage" * 1000)
    fetch(url_for(server.base, WEIGHTS), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / WEIGHTS).read_bytes()
    assert [r[2] for r in server.faults.requests] == [200, 200]
    assert all(r[1] for r in server.faults.requests)  # it did ask for ranges


def test_complete_part_is_finished_via_416(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "t.tsv"
    shutil.copyfile(SAMPLE / TRUTH, dest.with_name(dest.name + ".part"))
    rec = fetch(url_for(server.base, TRUTH), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / TRUTH).read_bytes() and rec.sha256 == _sha(SAMPLE / TRUTH)


def test_wrong_sha256_keeps_nothing(server: Server, tmp_path: Path) -> None:
    url, dest, wrong = url_for(server.base, WEIGHTS), tmp_path / "w.tar.gz", "0" * 64
    with pytest.raises(FetchError) as info:
        fetch(url, dest, sha256=wrong, **FAST)
    msg = str(info.value)
    assert url in msg and wrong in msg and _sha(SAMPLE / WEIGHTS) in msg
    assert _leftovers(dest) == []
    assert len(server.faults.requests) == 1  # a mismatch is final: downloaded once


def test_malformed_sha256_fails_before_downloading(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="'abc' is not a sha256"):
        fetch(url_for(server.base, WEIGHTS), tmp_path / "w.tar.gz", sha256="abc", **FAST)
    assert server.faults.requests == []


def test_wrong_size_keeps_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "t.tsv"
    with pytest.raises(FetchError, match="expected 3"):
        fetch(url_for(server.base, TRUTH), dest, size=3, **FAST)
    assert _leftovers(dest) == []


def test_404_fails_fast_naming_url(server: Server, tmp_path: Path) -> None:
    url = url_for(server.base, challenge.weights_archive(4096))
    with pytest.raises(FetchError, match=re.escape(url) + ".*404"):
        fetch(url, tmp_path / "w.tar.gz", backoff=10, stall_timeout=10, progress=False)
    assert len(server.faults.requests) == 1
    assert _leftovers(tmp_path / "w.tar.gz") == []


def _corrupt(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    dst.write_bytes(bytes(data))


def test_check_gzip(tmp_path: Path) -> None:
    check_gzip(SAMPLE / WEIGHTS)
    check_gzip(SAMPLE / INPUTS)
    bad = tmp_path / "flipped.tar.gz"
    _corrupt(SAMPLE / WEIGHTS, bad)
    with pytest.raises(FetchError, match=re.escape(str(bad))):
        check_gzip(bad)
    short = tmp_path / "short.tar.gz"
    short.write_bytes((SAMPLE / WEIGHTS).read_bytes()[:-1000])
    with pytest.raises(FetchError, match=re.escape(str(short))):
        check_gzip(short)
    with pytest.raises(FetchError, match="not-gzip"):
        check_gzip(_write(tmp_path / "not-gzip.gz", b"hello"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_corrupt_served_archive_rejected_without_checksum(tmp_path: Path) -> None:
    root = tmp_path / "mirror"
    shutil.copytree(SAMPLE.parent.parent, root)
    _corrupt(SAMPLE / WEIGHTS, root / "synthetic" / "sparsechallenge_2019" / WEIGHTS)
    for srv in serve(root):
        dest = tmp_path / "out" / "w.tar.gz"
        with pytest.raises(FetchError, match="corrupt or truncated gzip"):
            fetch(url_for(srv.base, WEIGHTS), dest, **FAST)
        assert _leftovers(dest) == []
        assert len(srv.faults.requests) == 1  # a bad archive is final: downloaded once


@pytest.mark.parametrize("kind", ["file_url", "folder"])
def test_local_bases(kind: str, tmp_path: Path) -> None:
    base = SAMPLE.resolve().as_uri() if kind == "file_url" else str(SAMPLE)
    for rel in (WEIGHTS, INPUTS, TRUTH):
        url = url_for(base, rel)
        assert url.startswith("file:///") and url.endswith(rel)
        rec = fetch(url, tmp_path / rel, **FAST)
        assert (tmp_path / rel).read_bytes() == (SAMPLE / rel).read_bytes()
        assert rec.sha256 == _sha(SAMPLE / rel)
    with pytest.raises(FetchError, match="not found"):
        fetch(url_for(base, "dnn/missing.tsv"), tmp_path / "m.tsv", **FAST)


def test_local_resume(tmp_path: Path) -> None:
    dest = tmp_path / "w.tar.gz"
    src = (SAMPLE / WEIGHTS).read_bytes()
    dest.with_name(dest.name + ".part").write_bytes(src[:12345])
    rec = fetch(url_for(SAMPLE, WEIGHTS), dest, sha256=hashlib.sha256(src).hexdigest(), **FAST)
    assert dest.read_bytes() == src and rec.size == len(src)


def test_url_for() -> None:
    for base in ("https://h/x/sparsechallenge_2019", "https://h/x/sparsechallenge_2019/"):
        assert url_for(base, "dnn/a.tsv") == "https://h/x/sparsechallenge_2019/dnn/a.tsv"
    assert url_for(challenge.BASE_URL, WEIGHTS) == challenge.BASE_URL + WEIGHTS
    assert url_for("file:///m/", "/dnn/a.tsv") == "file:///m/dnn/a.tsv"
    with pytest.raises(ValueError):
        url_for("gopher://h/", "a")


def _hammer(manifest: str, worker: int) -> None:
    for i in range(10):
        rec = FetchRecord(f"u{worker}-{i}", Path(manifest).parent / f"f{worker}-{i}", i, "ab", 0.0)
        record_manifest(Path(manifest), rec)


def test_manifest_concurrent_writers(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(manifest), w)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    entries = json.loads(manifest.read_text())
    assert set(entries) == {f"f{w}-{i}" for w in range(6) for i in range(10)}


def test_main(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest, manifest = tmp_path / TRUTH, tmp_path / "manifest.json"
    sha = _sha(SAMPLE / TRUTH)
    rc = main([url_for(server.base, TRUTH), str(dest), "--sha256", sha, "--manifest", str(manifest), "--no-progress"])
    assert rc == 0 and dest.read_bytes() == (SAMPLE / TRUTH).read_bytes()
    assert json.loads(manifest.read_text())[TRUTH]["sha256"] == sha
    rc = main([TRUTH, str(tmp_path / "b.tsv"), "--base", str(SAMPLE), "--sha256", "0" * 64, "--no-progress"])
    assert rc == 2 and "sha256 mismatch" in capsys.readouterr().err


# ------------------------------------------- truncated plain text (issue 14, item 6)


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_truth_without_length_cut_mid_line_resumes(server: Server, tmp_path: Path) -> None:
    server.faults.no_length, server.faults.cut_after = True, 13  # "287\n295\n386\n4": cut mid-line
    dest = tmp_path / "t.tsv"
    fetch(url_for(server.base, TRUTH), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / TRUTH).read_bytes()
    assert [(r[1], r[2]) for r in server.faults.requests] == [(None, 200), ("bytes=13-", 206)]


@pytest.mark.parametrize("cut", [0, 13])
def test_truth_without_length_always_cut_is_an_error(server: Server, tmp_path: Path, cut: int) -> None:
    server.faults.no_length, server.faults.cut_after, server.faults.cut_times = True, cut, 100
    server.faults.ignore_range = True  # every answer is a fresh, cut, length-less 200
    dest = tmp_path / "t.tsv"
    with pytest.raises(FetchError, match=r"3 attempts.*truncated transfer.*(newline|empty body)"):
        fetch(url_for(server.base, TRUTH), dest, retries=2, **FAST)
    assert not dest.exists() and len(server.faults.requests) == 3


@pytest.mark.parametrize("rel, cut", [(TRUTH, 12), (WEIGHTS, 3 << 16)])
def test_chunked_without_last_chunk_resumes(server: Server, tmp_path: Path, rel: str, cut: int) -> None:
    # The cut falls on a chunk boundary: only the missing terminating chunk tells it is short.
    server.faults.chunked, server.faults.cut_after = True, cut
    if rel == TRUTH:
        server.faults.trickle = 0.001  # one-byte chunks
    dest = tmp_path / Path(rel).name
    fetch(url_for(server.base, rel), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / rel).read_bytes()
    assert [(r[1], r[2]) for r in server.faults.requests] == [(None, 200), (f"bytes={cut}-", 206)]


def _mirror_with(tmp_path: Path, rel: str, data: bytes) -> Path:
    root = tmp_path / "mirror"
    shutil.copytree(SAMPLE.parent.parent, root)
    (root / "synthetic" / "sparsechallenge_2019" / rel).write_bytes(data)
    return root


@pytest.mark.parametrize(
    "body, line",
    [
        (b"287\n2_87\n", 2),  # int() would take it as 287
        (b"<html><body>Service unavailable</body></html>\n", 1),
        (b"287\n0\n", 2),
        (b"287\n-5\n", 2),
        (b"1" * 100 + b"\n", 1),
    ],
)
def test_truth_that_is_not_a_truth_file_is_refused(tmp_path: Path, body: bytes, line: int) -> None:
    for srv in serve(_mirror_with(tmp_path, TRUTH, body)):
        srv.faults.no_length = True
        dest = tmp_path / "out" / "t.tsv"
        with pytest.raises(FetchError, match=f"line {line}: .* not a row index"):
            fetch(url_for(srv.base, TRUTH), dest, **FAST)
        assert _leftovers(dest) == [] and len(srv.faults.requests) == 1


def test_check_truth(tmp_path: Path) -> None:
    check_truth(SAMPLE / TRUTH)
    check_truth(_write(tmp_path / "blank.tsv", b"5\n\n 7 \r\n"))  # what read_categories accepts
    check_truth(_write(tmp_path / "empty.tsv", b""))  # no input survived: valid
    with pytest.raises(FetchError, match=re.escape(str(tmp_path / "bad.tsv")) + ": line 3"):
        check_truth(_write(tmp_path / "bad.tsv", b"1\n2\nx\n"))


# --------------------------------------------- deadline and retry policy (item 7)


def test_trickling_server_stops_at_the_deadline(server: Server, tmp_path: Path) -> None:
    server.faults.trickle = 0.2  # one byte per 0.2 s: no read ever stalls
    dest = tmp_path / "w.tar.gz"
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"deadline of 1s passed with \d+ bytes"):
        fetch(url_for(server.base, WEIGHTS), dest, deadline=1.0, **FAST)
    assert time.monotonic() - started < 1.6
    assert len(server.faults.requests) == 1 and _part(dest).exists()  # kept for a rerun


def test_silent_server_fails_each_attempt_at_the_stall_timeout(server: Server, tmp_path: Path) -> None:
    server.faults.silent = 5
    started = time.monotonic()
    with pytest.raises(FetchError, match="failed after 3 attempts.*timed out"):
        fetch(
            url_for(server.base, TRUTH), tmp_path / "t.tsv", retries=2, backoff=0.001, stall_timeout=0.3, progress=False
        )
    assert time.monotonic() - started < 2.5 and len(server.faults.requests) == 3


def test_silent_server_stops_at_the_deadline(server: Server, tmp_path: Path) -> None:
    server.faults.silent = 5
    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline of 1s"):
        fetch(
            url_for(server.base, TRUTH),
            tmp_path / "t.tsv",
            retries=100,
            backoff=0.001,
            stall_timeout=0.3,
            deadline=1.0,
            progress=False,
        )
    assert time.monotonic() - started < 1.6


def test_no_back_off_past_the_deadline(server: Server, tmp_path: Path) -> None:
    server.faults.fail_first = 100
    started = time.monotonic()
    with pytest.raises(FetchError, match="gave up before the deadline of 5s after 1 attempts.*503"):
        fetch(url_for(server.base, TRUTH), tmp_path / "t.tsv", backoff=30, deadline=5, stall_timeout=10, progress=False)
    assert time.monotonic() - started < 1 and len(server.faults.requests) == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_permanent_status_is_tried_once(server: Server, tmp_path: Path, code: int) -> None:
    server.faults.fail_first, server.faults.status = 100, code
    url = url_for(server.base, TRUTH)
    with pytest.raises(FetchError, match=re.escape(url) + f".*{code}"):
        fetch(url, tmp_path / "t.tsv", backoff=10, stall_timeout=10, progress=False)
    assert len(server.faults.requests) == 1


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
def test_transient_status_is_retried(server: Server, tmp_path: Path, code: int) -> None:
    server.faults.fail_first, server.faults.status = 1, code
    dest = tmp_path / "t.tsv"
    fetch(url_for(server.base, TRUTH), dest, **FAST)
    assert dest.read_bytes() == (SAMPLE / TRUTH).read_bytes()
    assert [r[2] for r in server.faults.requests] == [code, 200]


def test_connection_refused_is_retried_then_clear(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dnn/t.tsv"
    with pytest.raises(FetchError, match=re.escape(url) + ".*failed after 3 attempts.*refused"):
        fetch(url, tmp_path / "t.tsv", retries=2, **FAST)


# ------------------------------------------------ invalid URLs and a full disk (item 9)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x",
        "http://h:99999/x",
        "http://h:port/x",
        "http:///x",
        "http://h/a b",
        "file://host/x",
        "gopher://h/x",
    ],
)
def test_invalid_url_is_one_clear_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(BadLocation, match=re.escape(url)):
        fetch(url, tmp_path / "t.tsv", **FAST)
    with pytest.raises(BadLocation, match=re.escape(url)):
        url_for(url, TRUTH)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_reported_as_such(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = Path.open

    def full_disk_open(self: Path, mode: str = "r", *args: object, **kwargs: object):
        stream = real_open(self, mode, *args, **kwargs)
        return _FullDisk(stream) if self.name.endswith(".part") and mode in ("wb", "ab") else stream

    monkeypatch.setattr(Path, "open", full_disk_open)
    dest = tmp_path / "w.tar.gz"
    with pytest.raises(FetchError) as info:
        fetch(url_for(server.base, WEIGHTS), dest, **FAST)
    msg = str(info.value)
    assert f"no space left on device writing {_part(dest)}" in msg
    assert "corrupt" not in msg and "truncated" not in msg and "damaged" not in msg
    assert len(server.faults.requests) == 1  # not retried


class _FullDisk(io.BufferedIOBase):
    """A writable file that takes 100 KB, then fails as a full disk does."""

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self.stream, self.room = stream, 100_000

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.stream.write(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


# ----------------------------------------------------- mistyped URLs (item 10)


@pytest.mark.parametrize(
    "location",
    [
        "http//host/x",
        "https//host/x",
        "HTTP//host/x",
        "https:/host/x",
        "http:host/x",
        "file:/tmp/x",
        "file:tmp/x",
        "ftp:/host/x",
        "mirror//data",
    ],
)
def test_mistyped_url_is_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadLocation, match=re.escape(repr(location)) + " looks like a mistyped URL"):
        url_for(location, TRUTH)
    with pytest.raises(BadLocation, match=re.escape(repr(location))):
        fetch(location, tmp_path / "t.tsv", **FAST)
    assert list(tmp_path.iterdir()) == []


def test_real_local_paths_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "my mirror" / "http"  # a space, and a folder named like a scheme
    shutil.copytree(SAMPLE, mirror)
    monkeypatch.chdir(tmp_path)
    for base in (str(mirror), "my mirror/http", "./my mirror/http", "my mirror/http/"):
        dest = tmp_path / "out" / base.replace("/", "_") / "t.tsv"
        fetch(url_for(base, TRUTH), dest, **FAST)
        assert dest.read_bytes() == (SAMPLE / TRUTH).read_bytes()
    monkeypatch.chdir(mirror.parent)
    fetch(url_for("http", TRUTH), tmp_path / "plain.tsv", **FAST)  # "http" alone is a folder


# ------------------------------------------------- the command line: one line, exit 2


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "spdnn.fetch", *args, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=60,
    )


def test_cli_errors_are_one_line_exit_2(server: Server, tmp_path: Path) -> None:
    bad_manifest = _write(tmp_path / "manifest.json", b"{not json")
    cases = [
        (["http://[::1/x", str(tmp_path / "a.tsv")], "http://[::1/x: invalid URL"),
        (["http//host/x", str(tmp_path / "b.tsv")], "'http//host/x' looks like a mistyped URL"),
        ([url_for(server.base, "dnn/missing.tsv"), str(tmp_path / "c.tsv")], "not found (HTTP 404)"),
        ([TRUTH, str(tmp_path / "d.tsv"), "--base", str(SAMPLE), "--sha256", "0" * 64], "sha256 mismatch"),
        (
            [TRUTH, str(tmp_path / "e.tsv"), "--base", str(SAMPLE), "--manifest", str(bad_manifest)],
            "not a JSON manifest",
        ),
    ]
    for args, expected in cases:
        run = _cli(*args)
        assert run.returncode == 2, run.stderr
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("spdnn.fetch: error: "), run.stderr
        assert expected in lines[0]


def test_cli_options(server: Server, tmp_path: Path) -> None:
    run = _cli(
        url_for(server.base, TRUTH),
        str(tmp_path / "t.tsv"),
        "--retries",
        "0",
        "--backoff",
        "0.1",
        "--stall-timeout",
        "5",
        "--deadline",
        "30",
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.tsv").read_bytes() == (SAMPLE / TRUTH).read_bytes()
    for bad in (["--deadline", "0"], ["--stall-timeout", "-1"], ["--retries", "-1"]):
        run = _cli(TRUTH, str(tmp_path / "x.tsv"), *bad)
        assert run.returncode == 2 and "usage:" in run.stderr
