"""Download the official challenge files, resumably and verified.

A download goes to `dest.part` and is renamed onto `dest` only once it is complete and
verified, so a file at `dest` is always a finished one (the rule of DESIGN.md). The base
URL may be http(s)://, file:// or a plain local folder, so a local mirror works the same
as the official bucket.

    python -m spdnn.fetch URL DEST [--sha256 X] [--size N] [--manifest M]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import re
import sys
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence
from urllib.error import HTTPError, URLError

from tqdm import tqdm

from spdnn.challenge import BASE_URL
from spdnn.io.atomic import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Statuses worth another try: the server or a proxy is busy, not the request wrong.
_RETRY_STATUS = {408, 425, 429}
_NETWORK_ERRORS = (URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class FetchError(RuntimeError):
    """A download that cannot succeed; the message names the URL (or file) and the reason."""


class _Transient(Exception):
    """One attempt failed in a way another attempt may fix."""


class _Restart(Exception):
    """The .part does not fit the remote file: discard it and start again from byte 0."""


@dataclass(frozen=True)
class FetchRecord:
    """What was fetched: source, final path, byte size, hex sha256, wall seconds."""

    url: str
    path: Path
    size: int
    sha256: str
    seconds: float


# --------------------------------------------------------------------------- URLs


def _is_url(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _as_url(location: str | os.PathLike) -> str:
    """A URL as is; a local path becomes a file:// URL."""
    text = os.fspath(location)
    if _is_url(text):
        scheme = text.split("://", 1)[0].lower()
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r} in {text!r}")
        return text
    return Path(text).resolve().as_uri()


def url_for(base_url: str | os.PathLike, relative: str) -> str:
    """Join a base (http(s)://, file:// or a local folder) with an official relative path.

    >>> url_for("https://host/sparsechallenge_2019", "dnn/neuron1024.tar.gz")
    'https://host/sparsechallenge_2019/dnn/neuron1024.tar.gz'
    """
    base = _as_url(base_url)
    # Plain concatenation, not urljoin: urljoin drops the last segment of a base without "/".
    return base.rstrip("/") + "/" + urllib.parse.quote(relative.lstrip("/"), safe="/")


def default_url(relative: str) -> str:
    """The official URL of a relative challenge path."""
    return url_for(BASE_URL, relative)


# ---------------------------------------------------------------- one attempt


@dataclass
class _Response:
    stream: BinaryIO
    start: int  # offset of the body's first byte: 0 when the server ignored Range
    total: int | None  # size of the whole file, when the server says
    validator: str | None  # ETag / Last-Modified, for If-Range on the next attempt


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse 'bytes a-b/total' (or 'bytes */total') into (a, total)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)\s*", value or "")
    if not m:
        return None
    start = 0 if m[1] == "*" else int(m[1])
    return start, None if m[2] == "*" else int(m[2])


def _int_header(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _open_file(url: str, offset: int) -> _Response:
    """Open a file:// URL at `offset`; a local file honours a range exactly."""
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise FetchError(f"{url}: not found (no such file {path})") from None
    except OSError as err:  # a folder, no permission: another try will not help
        raise FetchError(f"{url}: cannot read {path}: {err}") from None
    total = os.fstat(stream.fileno()).st_size
    start = offset if offset <= total else 0
    stream.seek(start)
    return _Response(stream, start, total, None)


def _http_error(url: str, err: HTTPError, offset: int) -> _Response:
    """Turn an HTTP error into a transient failure, a final FetchError, or (416) an empty body."""
    code = err.code
    headers = err.headers
    err.close()
    if code == 416:
        # Range past the end: the .part is already whole if its size is the file's size.
        parsed = _content_range(headers.get("Content-Range") if headers else None)
        if parsed and parsed[1] == offset:
            return _Response(io.BytesIO(), offset, offset, None)
        raise _Restart("HTTP 416 (partial file does not fit the remote one); restarting")
    if code >= 500 or code in _RETRY_STATUS:
        raise _Transient(f"HTTP {code} {err.reason}")
    if code == 404:
        raise FetchError(f"{url}: not found (HTTP 404)")
    raise FetchError(f"{url}: HTTP {code} {err.reason}")


def _open_http(url: str, offset: int, timeout: float, validator: str | None) -> _Response:
    """GET `url` from `offset`; handles servers that answer 200 (whole file) to a Range."""
    headers = {"Accept-Encoding": "identity", "User-Agent": "spdnn-fetch"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:  # the server sends the whole file if it changed since the first try
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        return _http_error(url, err, offset)
    length = _int_header(resp.headers.get("Content-Length"))
    validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
    if resp.status == 206:
        parsed = _content_range(resp.headers.get("Content-Range"))
        if parsed is None or parsed[0] != offset:
            resp.close()
            raise _Restart(f"bad Content-Range {resp.headers.get('Content-Range')!r}; restarting")
        total = parsed[1] if parsed[1] is not None else (None if length is None else offset + length)
        return _Response(resp, offset, total, validator)
    # 200: the whole file, whether or not we asked for a range.
    return _Response(resp, 0, length, validator)


def _open(url: str, offset: int, timeout: float, validator: str | None) -> _Response:
    if url.lower().startswith("file://"):
        return _open_file(url, offset)
    return _open_http(url, offset, timeout, validator)


class _Digest:
    """sha256 of a .part's first `n` bytes, carried across attempts so a resume costs no re-read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sha, self.n = hashlib.sha256(), 0

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.n += len(chunk)

    def sync(self, part: Path, size: int) -> None:
        """Make the digest cover exactly the first `size` bytes of `part`."""
        if self.n == size:
            return
        self.reset()
        with part.open("rb") as f:
            while self.n < size and (chunk := f.read(min(CHUNK, size - self.n))):
                self.update(chunk)


def _attempt(
    url: str, part: Path, size: int | None, timeout: float,
    state: dict[str, str | None], digest: _Digest, bar: tqdm,
) -> None:
    """One try at completing `part`; raises _Transient for what another try may fix."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout, state.get("validator"))
    except _NETWORK_ERRORS as err:
        raise _Transient(f"{type(err).__name__}: {err}") from err
    except _Restart as err:
        part.unlink(missing_ok=True)
        raise _Transient(str(err)) from None
    state["validator"] = state.get("validator") or resp.validator
    try:
        if resp.total is not None and size is not None and resp.total != size:
            part.unlink(missing_ok=True)
            raise FetchError(f"{url}: server reports {resp.total} bytes, expected {size}")
        _copy(resp, part, digest, bar)
    except _NETWORK_ERRORS as err:
        raise _Transient(f"{type(err).__name__}: {err}") from err
    finally:
        resp.stream.close()
    _check_length(part, resp.total if resp.total is not None else size)


def _copy(resp: _Response, part: Path, digest: _Digest, bar: tqdm) -> None:
    """Append the body to `part` (or overwrite it when the body starts at 0), hashing as it goes."""
    if resp.start:
        digest.sync(part, resp.start)
    else:
        digest.reset()
    bar.reset(total=resp.total)
    bar.update(resp.start)
    with part.open("ab" if resp.start else "wb") as out:
        while chunk := resp.stream.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))


def _check_length(part: Path, expected: int | None) -> None:
    """A body shorter than announced is a cut connection (resume); longer is garbage (restart)."""
    got = part.stat().st_size
    if expected is None or got == expected:
        return
    if got > expected:
        part.unlink()
        raise _Transient(f"got {got} bytes, more than the {expected} expected; restarting")
    raise _Transient(f"truncated transfer: got {got} of {expected} bytes")


# ------------------------------------------------------------------ fetch


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool = True,
    gzip_check: bool | None = None,
) -> FetchRecord:
    """Download `url` to `dest` through `dest.part`, resuming, retrying and verifying.

    Retries (with back-off `backoff * 2**k` seconds) connection errors, timeouts, 5xx and
    truncated bodies, resuming with a Range request; other HTTP errors (404...) fail at
    once. `size` and `sha256`, when given, must match or nothing is kept. `gzip_check`
    (default: when `dest` ends in .gz and no sha256 is given) decompresses the result to
    reject a truncated or corrupt archive. Raises FetchError.
    """
    url, dest = _as_url(url), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    started = time.monotonic()
    digest = _Digest()
    state: dict[str, str | None] = {}  # the server's validator, kept across attempts
    with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not progress, leave=False) as bar:
        _download(url, part, size, retries, backoff, timeout, state, digest, bar)
    got = part.stat().st_size
    actual = _verify(url, part, got, size, sha256, digest)
    if gzip_check if gzip_check is not None else (sha256 is None and dest.name.endswith(".gz")):
        _check_gzip_or_discard(part, url)
    os.replace(part, dest)
    return FetchRecord(url, dest, got, actual, time.monotonic() - started)


def _download(
    url: str, part: Path, size: int | None, retries: int, backoff: float, timeout: float,
    state: dict[str, str | None], digest: _Digest, bar: tqdm,
) -> None:
    """Run attempts until one completes; the .part survives a final failure so a rerun resumes."""
    last: _Transient | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = min(backoff * 2 ** (attempt - 1), 300.0)
            log.warning("%s: %s; retry %d/%d in %.3gs", url, last, attempt, retries, delay)
            time.sleep(delay)
        try:
            _attempt(url, part, size, timeout, state, digest, bar)
            return
        except _Transient as err:
            last = err
    raise FetchError(f"{url}: failed after {retries + 1} attempts: {last}")


def _verify(url: str, part: Path, got: int, size: int | None, sha256: str | None,
            digest: _Digest) -> str:
    """Check the configured size and sha256; on mismatch delete the .part and raise."""
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: got {got} bytes, expected {size}; download discarded")
    digest.sync(part, got)
    actual = digest.sha.hexdigest()
    if sha256 is not None and actual.lower() != sha256.strip().lower():
        part.unlink(missing_ok=True)
        raise FetchError(
            f"{url}: sha256 mismatch: expected {sha256.strip().lower()}, got {actual}; "
            "download discarded"
        )
    return actual


def _check_gzip_or_discard(part: Path, url: str) -> None:
    try:
        check_gzip(part)
    except FetchError as err:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: {err}; download discarded") from None


def check_gzip(path: str | os.PathLike) -> None:
    """Decompress a .gz (or .tar.gz) fully; raise FetchError naming it if truncated or corrupt.

    gzip's trailer (CRC-32 and length) makes a full read a real integrity check.
    """
    try:
        with gzip.open(path, "rb") as f:
            while f.read(CHUNK):
                pass
    except (EOFError, OSError, zlib.error) as err:
        raise FetchError(f"{os.fspath(path)}: corrupt or truncated gzip ({err})") from None


# --------------------------------------------------------------- manifest


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive flock on `lock`, so concurrent writers update the manifest in turn."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _manifest_key(manifest: Path, path: Path) -> str:
    """The file's name relative to the manifest's folder, with '/' separators."""
    rel = os.path.relpath(Path(path).resolve(), Path(manifest).resolve().parent)
    return Path(rel).as_posix()


def record_manifest(manifest: Path, record: FetchRecord, *, name: str | None = None) -> None:
    """Add or update `record` in the JSON manifest {name: {url, size, sha256, fetched_at}}.

    `name` defaults to the file's path relative to the manifest's folder. The update holds
    an flock on `manifest.lock` and replaces the manifest atomically.
    """
    manifest = Path(manifest)
    key = name if name is not None else _manifest_key(manifest, record.path)
    with _locked(manifest.with_name(manifest.name + ".lock")):
        entries = json.loads(manifest.read_text()) if manifest.exists() else {}
        entries[key] = {
            "url": record.url,
            "size": record.size,
            "sha256": record.sha256,
            "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


# -------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spdnn.fetch", description=__doc__.split("\n")[0])
    parser.add_argument("url", help="URL, or a path relative to --base")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--base", help="base URL or local folder the url is relative to")
    parser.add_argument("--sha256")
    parser.add_argument("--size", type=int)
    parser.add_argument("--manifest", type=Path, help="JSON manifest to record the file in")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--backoff", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    url = url_for(args.base, args.url) if args.base else args.url
    try:
        record = fetch(url, args.dest, sha256=args.sha256, size=args.size, retries=args.retries,
                       backoff=args.backoff, timeout=args.timeout, progress=not args.no_progress)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.manifest:
        record_manifest(args.manifest, record)
    print(f"{record.path}  {record.size} bytes  sha256 {record.sha256}  {record.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
