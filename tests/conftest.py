"""Shared fixtures and helpers: the real challenge sample (first 30 layers of neuron1024, 600 inputs),
the workflow run as a subprocess, small archives, and an HTTP server with faults for the fetch tests."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import yaml

# The real 30-layer sample of the official data, kept in the repository so CI has it too.
SAMPLE = Path(__file__).parent / "data" / "challenge-sample" / "synthetic" / "sparsechallenge_2019"
SAMPLE_LAYERS = 30
SAMPLE_INPUTS = 600


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory) -> dict:
    """The real sample converted once into the Arrow cache."""
    from spdnn.io.cache import convert_inputs, convert_weights

    out = tmp_path_factory.mktemp("sample-cache")
    weights = out / "neuron1024-l30.weights.arrow"
    inputs = out / "sparse-images-1024.arrow"
    convert_weights(SAMPLE / "dnn/neuron1024.tar.gz", weights, 1024, SAMPLE_LAYERS, source="sample", progress=False)
    convert_inputs(
        SAMPLE / "mnist/sparse-images-1024.tsv.gz", inputs, 1024, SAMPLE_INPUTS, source="sample", progress=False
    )
    return {"weights": weights, "inputs": inputs, "truth": SAMPLE / "dnn/neuron1024-l120-categories.tsv"}


def benchmark_modules(package: str, *names: str) -> tuple[ModuleType, ...]:
    """Submodules of a package under benchmarks/ (the scripts' own, not installed), imported from its
    folder by location: no sys.path entry, and the same `package` in sys.modules that the
    benchmark scripts import, so relative imports inside it work."""
    if package not in sys.modules:
        folder = ROOT / "benchmarks" / package
        spec = importlib.util.spec_from_file_location(
            package, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None, folder
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return tuple(importlib.import_module(f"{package}.{name}") for name in names)


def require_cuda_device() -> None:
    """Skip the calling test unless pycuda imports and its driver sees a CUDA device."""
    pytest.importorskip("pycuda")
    import pycuda.driver as cuda

    try:
        cuda.init()
        if cuda.Device.count() == 0:
            pytest.skip("no CUDA device")
    except cuda.Error as err:
        pytest.skip(f"no usable CUDA driver: {err}")


def have_executable(name: str) -> bool:
    return shutil.which(name) is not None


# ----------------------------------------------------------------------------- the workflow

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow/Snakefile"


def snakemake(
    workdir: Path, config: dict | None, *args: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(workdir / "config.yaml")]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=None if env is None else {**os.environ, **env}
    )


# ----------------------------------------------------------------------------- files and processes


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def butterfly_tsv(n: int, shift: int = 1) -> list[str]:
    """A valid 32-per-row layer for N=n as TSV lines (1-based)."""
    lines = []
    for i in range(n):
        for j in sorted({(i + shift * t) % n for t in range(32)}):
            lines.append(f"{i + 1}\t{j + 1}\t0.0625\n")
    return lines


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------ an HTTP server with faults (fetch, workflow)


@dataclass
class Faults:
    """Switches read by the handler; `requests` logs (path, Range header, status) per GET."""

    fail_first: int = 0  # answer this many requests with 503
    cut_after: int | None = None  # send only this many body bytes, then close
    cut_times: int = 1  # ...on this many requests
    ignore_range: bool = False
    throttle: float = 0.0  # seconds to sleep after every 64 KiB of body (a slow server)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)
    status: int = 503  # the status fail_first answers with
    no_length: bool = False  # send no Content-Length: the body ends when the connection closes
    chunked: bool = False  # HTTP/1.1 chunked; a cut body then lacks the terminating chunk
    trickle: float = 0.0  # send one byte every `trickle` seconds
    silent: float = 0.0  # accept the request, then say nothing for this many seconds


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    faults: Faults  # set on a per-server subclass

    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        f, rng = self.faults, self.headers.get("Range")
        if f.silent:
            f.requests.append((self.path, rng, 0))
            return self._say_nothing(f.silent)
        if f.fail_first > 0:
            f.fail_first -= 1
            return self._error(f.status, rng)
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
        if f.chunked:
            self.protocol_version = "HTTP/1.1"  # chunked needs it; urllib asks to close anyway
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if f.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif not f.no_length:
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body, cut = data[start:], False
        if f.cut_after is not None and f.cut_times > 0:
            f.cut_times -= 1
            body, cut = body[: f.cut_after], True  # returning closes the connection
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(body, final_chunk=not cut)

    def _send(self, body: bytes, final_chunk: bool) -> None:
        f, step = self.faults, 1 if self.faults.trickle else 1 << 16
        for at in range(0, len(body), step):
            piece = body[at : at + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if f.chunked else piece)
            self.wfile.flush()
            time.sleep(f.trickle or f.throttle)
        if f.chunked and final_chunk:
            self.wfile.write(b"0\r\n\r\n")

    def _say_nothing(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # short naps: the test's server shuts down promptly
            time.sleep(0.05)

    def _error(self, code: int, rng: str | None) -> None:
        self.faults.requests.append((self.path, rng, code))
        self.send_error(code)


@dataclass
class Server:
    base: str
    root: Path
    faults: Faults


def serve(root: Path) -> Iterator[Server]:
    faults = Faults()
    handler = type("Handler", (RangeHandler,), {"faults": faults})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield Server(f"http://{host}:{port}/synthetic/sparsechallenge_2019/", root, faults)
    finally:
        httpd.shutdown()
        httpd.server_close()
