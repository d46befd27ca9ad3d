"""spdnn.fetch against a real HTTP server on 127.0.0.1 serving the real challenge sample.

The handler below supports Range requests (SimpleHTTPRequestHandler does not) and can
simulate faults: 503s, a connection cut mid-body, a server that ignores Range.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import multiprocessing
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from spdnn import challenge
from spdnn.fetch import FetchError, FetchRecord, check_gzip, fetch, main, record_manifest, url_for

SAMPLE = Path(__file__).parent / "data" / "challenge-sample" / "synthetic" / "sparsechallenge_2019"
WEIGHTS = challenge.weights_archive(1024)
INPUTS = challenge.inputs_file(1024)
TRUTH = challenge.truth_file(1024, 120)
FAST = dict(backoff=0.001, timeout=10, progress=False)


@dataclass
class Faults:
    """Switches read by the handler; `requests` logs (path, Range header, status) per GET."""

    fail_first: int = 0  # answer this many requests with 503
    cut_after: int | None = None  # send only this many body bytes, then close
    cut_times: int = 1  # ...on this many requests
    ignore_range: bool = False
    throttle: float = 0.0  # seconds to sleep after every 64 KiB of body (a slow server)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    faults: Faults  # set on a per-server subclass

    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        f, rng = self.faults, self.headers.get("Range")
        if f.fail_first > 0:
            f.fail_first -= 1
            return self._error(503, rng)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self._error(404, rng)
        data = path.read_bytes()
        start = 0
        if rng and not f.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(data):
                self.faults.requests.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        status = 206 if start else 200
        f.requests.append((self.path, rng, status))
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if f.cut_after is not None and f.cut_times > 0:
            f.cut_times -= 1
            body = body[: f.cut_after]  # HTTP/1.0: returning closes the connection
        if f.throttle:
            for at in range(0, len(body), 1 << 16):
                self.wfile.write(body[at:at + (1 << 16)])
                self.wfile.flush()
                time.sleep(f.throttle)
        else:
            self.wfile.write(body)

    def _error(self, code: int, rng: str | None) -> None:
        self.faults.requests.append((self.path, rng, code))
        self.send_error(code)


@dataclass
class Server:
    base: str
    root: Path
    faults: Faults


def _serve(root: Path) -> Iterator[Server]:
    faults = Faults()
    handler = type("Handler", (RangeHandler,), {"faults": faults})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield Server(f"http://{host}:{port}/synthetic/sparsechallenge_2019/", root, faults)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    """The real sample, served as is (layout: <root>/synthetic/sparsechallenge_2019/...)."""
    yield from _serve(SAMPLE.parent.parent)


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
    rec = fetch(url_for(server.base, INPUTS), tmp_path / "x.gz", sha256=_sha(src).upper(),
                size=src.stat().st_size, **FAST)
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


def test_wrong_size_keeps_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "t.tsv"
    with pytest.raises(FetchError, match="expected 3"):
        fetch(url_for(server.base, TRUTH), dest, size=3, **FAST)
    assert _leftovers(dest) == []


def test_404_fails_fast_naming_url(server: Server, tmp_path: Path) -> None:
    url = url_for(server.base, challenge.weights_archive(4096))
    with pytest.raises(FetchError, match=re.escape(url) + ".*404"):
        fetch(url, tmp_path / "w.tar.gz", backoff=10, timeout=10, progress=False)
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
    for srv in _serve(root):
        dest = tmp_path / "out" / "w.tar.gz"
        with pytest.raises(FetchError, match="corrupt or truncated gzip"):
            fetch(url_for(srv.base, WEIGHTS), dest, **FAST)
        assert _leftovers(dest) == []


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
    rc = main([url_for(server.base, TRUTH), str(dest), "--sha256", sha,
               "--manifest", str(manifest), "--no-progress"])
    assert rc == 0 and dest.read_bytes() == (SAMPLE / TRUTH).read_bytes()
    assert json.loads(manifest.read_text())[TRUTH]["sha256"] == sha
    rc = main([TRUTH, str(tmp_path / "b.tsv"), "--base", str(SAMPLE), "--sha256", "0" * 64,
               "--no-progress"])
    assert rc == 1 and "sha256 mismatch" in capsys.readouterr().err
