"""Download the official challenge files, resumably and verified.

A download goes to `dest.part` and is renamed onto `dest` only once it is complete and
verified, so a file at `dest` is always a finished one (the rule of docs/design.md). The base
URL may be http(s)://, file:// or a plain local folder, so a local mirror works the same
as the official bucket.

Only what another try may fix is retried (tenacity): connection reset/refused, timeouts,
HTTP 5xx/408/425/429 and cut transfers, with capped exponential back-off, a bounded number
of attempts and one deadline for the whole fetch. Anything else (a 404, a bad URL, a sha256
or integrity mismatch, a full disk) fails at once with one FetchError.

    python -m spdnn.fetch URL DEST [--sha256 X] [--size N] [--manifest M]
        [--retries 5] [--backoff 1] [--stall-timeout 60] [--deadline 21600]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

from spdnn.io.atomic import atomic_path
from spdnn.progress import progress as progress_bar

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_DEADLINE = 6 * 3600.0  # the whole fetch: the 65536-neuron archive is GBs on a slow link
DEFAULT_STALL = 60.0  # one read (or the connect) waiting longer than this fails the attempt
MAX_BACKOFF = 60.0  # cap of the exponential back-off between attempts
# Statuses worth another try: the server or a proxy is busy, not the request wrong.
_RETRY_STATUS = {408, 425, 429}
# What a read or connect may raise; _network_failure sorts transient from permanent.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EAGAIN,
}
_TRANSIENT_TYPES = (
    TimeoutError,
    ConnectionError,
    http.client.IncompleteRead,
    http.client.BadStatusLine,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class FetchError(RuntimeError):
    """A download that cannot succeed; the message names the URL (or file) and the reason."""


class BadLocation(FetchError, ValueError):
    """A base URL or path that is malformed or unsupported (a ValueError too, for older callers)."""


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


_SCHEMES = ("http", "https", "file")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL with its '://' mistyped ('http//h', 'https:/h', 'file:x'): never taken as a folder.
_MISTYPED = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(//|:/)|(https?|file):", re.IGNORECASE)


def _is_url(text: str) -> bool:
    return _URL.match(text) is not None


def _check_url(url: str) -> None:
    """Raise BadLocation, naming `url`, unless it is a well-formed http(s):// or file:// URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number 0..65535)
    except ValueError as err:
        raise BadLocation(f"{url}: invalid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise BadLocation(f"unsupported URL scheme {scheme!r} in {url!r} (use http, https or file)")
    if scheme != "file" and not parts.hostname:
        raise BadLocation(f"{url}: invalid URL (no host)")
    if scheme == "file" and parts.netloc not in ("", "localhost"):
        raise BadLocation(f"{url}: a file URL names no host: write file:///path")
    if re.search(r"[\x00-\x20\x7f]", url):  # http.client would refuse it at each attempt
        raise BadLocation(f"{url!r}: invalid URL (spaces and control characters must be %-quoted)")


def _as_url(location: str | os.PathLike) -> str:
    """A URL as is (checked); a local path becomes a file:// URL; a mistyped URL is an error."""
    text = os.fspath(location)
    if _is_url(text):
        _check_url(text)
        return text
    if _MISTYPED.match(text):
        raise BadLocation(
            f"{text!r} looks like a mistyped URL (expected scheme://...); "
            "a local folder with that name must be given as ./" + text
        )
    return Path(text).resolve().as_uri()


def local_path(location: str | os.PathLike) -> Path | None:
    """The local path a location names (a folder or a file:// URL), None for http(s); a
    mistyped or invalid location raises BadLocation, as fetch would."""
    url = _as_url(location)
    parts = urllib.parse.urlparse(url)
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme.lower() == "file" else None


def url_for(base_url: str | os.PathLike, relative: str) -> str:
    """Join a base (http(s)://, file:// or a local folder) with an official relative path.

    >>> url_for("https://host/sparsechallenge_2019", "dnn/neuron1024.tar.gz")
    'https://host/sparsechallenge_2019/dnn/neuron1024.tar.gz'
    """
    base = _as_url(base_url)
    # Plain concatenation, not urljoin: urljoin drops the last segment of a base without "/".
    return base.rstrip("/") + "/" + urllib.parse.quote(relative.lstrip("/"), safe="/")


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
    path = local_path(url)
    assert path is not None  # a file:// URL
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
    except ValueError as err:  # a URL urllib refuses: no retry can fix it
        raise BadLocation(f"{url}: invalid URL ({err})") from None
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


def _network_failure(url: str, err: BaseException) -> Exception:
    """What to raise for a failed connect or read: _Transient if another try may fix it."""
    reason = err.reason if isinstance(err, URLError) and isinstance(err.reason, BaseException) else err
    text = f"{type(reason).__name__}: {reason}"
    if isinstance(reason, socket.gaierror):  # DNS: only "try again" is worth another try
        if reason.errno == socket.EAI_AGAIN:
            return _Transient(text)
        return FetchError(f"{url}: cannot resolve the host ({reason.strerror or reason})")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return FetchError(f"{url}: {text}")
    if isinstance(reason, _TRANSIENT_TYPES):
        return _Transient(text)
    if isinstance(reason, OSError) and reason.errno in _TRANSIENT_ERRNOS:
        return _Transient(text)
    return FetchError(f"{url}: {text}")


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


@dataclass
class _Job:
    """One fetch's settings and the state its attempts share."""

    url: str
    part: Path
    size: int | None
    stall_timeout: float
    deadline: float  # seconds for the whole fetch
    deadline_at: float  # the same, as a time.monotonic() value
    text_check: bool
    digest: _Digest
    bar: tqdm
    validator: str | None = None  # the server's ETag / Last-Modified, for If-Range

    def remaining(self) -> float:
        """Seconds left before the deadline; past it, a FetchError (never retried)."""
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            got = self.part.stat().st_size if self.part.exists() else 0
            raise FetchError(
                f"{self.url}: deadline of {self.deadline:g}s passed with {got} bytes "
                f"(kept in {self.part}; run again to resume)"
            )
        return left


def _attempt(job: _Job) -> None:
    """One try at completing the .part; raises _Transient for what another try may fix."""
    offset = job.part.stat().st_size if job.part.exists() else 0
    # The socket timeout bounds each connect and read: a stall fails the attempt, and the
    # deadline (checked after every read) is overrun by at most one such wait.
    timeout = min(job.stall_timeout, job.remaining())
    try:
        resp = _open(job.url, offset, timeout, job.validator)
    except _NETWORK_ERRORS as err:
        raise _network_failure(job.url, err) from err
    except _Restart as err:
        job.part.unlink(missing_ok=True)
        raise _Transient(str(err)) from None
    job.validator = job.validator or resp.validator
    try:
        if resp.total is not None and job.size is not None and resp.total != job.size:
            job.part.unlink(missing_ok=True)
            raise FetchError(f"{job.url}: server reports {resp.total} bytes, expected {job.size}")
        _copy(resp, job)
    finally:
        resp.stream.close()
    _check_length(job.part, resp.total if resp.total is not None else job.size)
    if resp.total is None and job.text_check:
        _check_text_end(job.part)


def _read(job: _Job, stream: BinaryIO) -> bytes:
    """The next piece of the body: read1 returns what has arrived, so a trickle meets the deadline."""
    try:
        chunk = stream.read1(CHUNK)  # type: ignore[attr-defined]  # a buffered stream: a file or an HTTP response
    except _NETWORK_ERRORS as err:
        raise _network_failure(job.url, err) from err
    job.remaining()
    return chunk


@contextlib.contextmanager
def _writing(what: str, path: Path) -> Iterator[None]:
    """Report a failed write (a full disk above all) as what it is, not as a bad download."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FetchError(f"{what}: no space left on device writing {path}") from None
        raise FetchError(f"{what}: cannot write {path}: {err.strerror or err}") from None


def _copy(resp: _Response, job: _Job) -> None:
    """Append the body to the .part (or overwrite it when the body starts at 0), hashing it."""
    part, digest = job.part, job.digest
    if resp.start:
        digest.sync(part, resp.start)
    else:
        digest.reset()
    job.bar.reset(total=resp.total)
    job.bar.update(resp.start)
    with _writing(job.url, part), part.open("ab" if resp.start else "wb") as out:
        while chunk := _read(job, resp.stream):
            out.write(chunk)
            digest.update(chunk)
            job.bar.update(len(chunk))


def _check_length(part: Path, expected: int | None) -> None:
    """A body shorter than announced is a cut connection (resume); longer is garbage (restart)."""
    got = part.stat().st_size
    if expected is None or got == expected:
        return
    if got > expected:
        part.unlink()
        raise _Transient(f"got {got} bytes, more than the {expected} expected; restarting")
    raise _Transient(f"truncated transfer: got {got} of {expected} bytes")


def _check_text_end(part: Path) -> None:
    """Without a Content-Length, a cut connection looks like the end: a text file must end in "\n"."""
    with part.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            raise _Transient("truncated transfer: empty body and no Content-Length")
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            raise _Transient("truncated transfer: no Content-Length and the body does not end with a newline")


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
    stall_timeout: float = DEFAULT_STALL,
    deadline: float = DEFAULT_DEADLINE,
    progress: bool = True,
    gzip_check: bool | None = None,
    text_check: bool | None = None,
) -> FetchRecord:
    """Download `url` to `dest` through `dest.part`, resuming, retrying and verifying.

    Retries, at most `retries` times with back-off `backoff * 2**k` seconds (capped at
    MAX_BACKOFF), connection errors, timeouts, HTTP 5xx/408/425/429 and truncated bodies,
    resuming with a Range request; anything else fails at once. A read waiting more than
    `stall_timeout` seconds fails the attempt, and the whole fetch stops at `deadline`
    seconds (overrun by at most one stalled read; the .part is kept for a rerun). `size` and `sha256`, when given,
    must match or nothing is kept. `gzip_check` (default: when `dest` ends in .gz and no sha256 is
    given) decompresses the result to reject a truncated or corrupt archive. `text_check`
    (default: when `dest` ends in .tsv, a truth file) requires one positive integer per line
    and, when the server sent no length, a final newline. Raises FetchError.
    """
    url, dest = _as_url(url), Path(dest)
    if sha256 is not None and not re.fullmatch(r"[0-9A-Fa-f]{64}", sha256.strip()):
        raise FetchError(f"{url}: {sha256!r} is not a sha256 (64 hex digits)")
    part = _part_path(dest)
    with _writing(url, dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if text_check is None:
        text_check = dest.name.endswith(".tsv")
    with progress_bar(
        desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False
    ) as bar:
        job = _Job(url, part, size, stall_timeout, deadline, started + deadline, text_check, _Digest(), bar)
        _download(job, retries, backoff)
    got = part.stat().st_size
    actual = _verify(url, part, got, size, sha256, job.digest)
    if gzip_check if gzip_check is not None else (sha256 is None and dest.name.endswith(".gz")):
        _check_or_discard(check_gzip, part, url)
    if text_check:
        _check_or_discard(check_truth, part, url)
    with _writing(url, dest):
        os.replace(part, dest)
    return FetchRecord(url, dest, got, actual, time.monotonic() - started)


def _download(job: _Job, retries: int, backoff: float) -> None:
    """Run attempts until one completes; the .part survives a final failure so a rerun resumes."""
    wait = wait_exponential(multiplier=backoff, max=MAX_BACKOFF)

    def past_deadline(state: RetryCallState) -> bool:  # no back-off that would end past it
        return time.monotonic() + wait(state) >= job.deadline_at

    def log_retry(state: RetryCallState) -> None:
        log.warning(
            "%s: %s; retry %d/%d in %.3gs",
            job.url,
            state.outcome.exception(),  # type: ignore[union-attr]  # set before a sleep
            state.attempt_number,
            retries,
            state.next_action.sleep,  # type: ignore[union-attr]
        )

    retrying = Retrying(
        retry=retry_if_exception_type(_Transient),  # FetchError and the rest: at once
        stop=stop_after_attempt(retries + 1) | past_deadline,  # type: ignore[operator]  # stop_base.__or__
        wait=wait,
        before_sleep=log_retry,
    )
    try:
        retrying(_attempt, job)
    except RetryError as err:
        attempts, last = err.last_attempt.attempt_number, err.last_attempt.exception()
        if attempts <= retries:
            raise FetchError(
                f"{job.url}: gave up before the deadline of {job.deadline:g}s after {attempts} attempts: {last}"
            ) from None
        raise FetchError(f"{job.url}: failed after {attempts} attempts: {last}") from None


def _verify(url: str, part: Path, got: int, size: int | None, sha256: str | None, digest: _Digest) -> str:
    """Check the configured size and sha256; on mismatch delete the .part and raise."""
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: got {got} bytes, expected {size}; download discarded")
    digest.sync(part, got)
    actual = digest.sha.hexdigest()
    if sha256 is not None and actual.lower() != sha256.strip().lower():
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: sha256 mismatch: expected {sha256.strip().lower()}, got {actual}; download discarded")
    return actual


def _check_or_discard(check, part: Path, url: str) -> None:
    """Run an integrity `check` on the finished `.part`; a failure discards it and names the URL."""
    try:
        check(part)
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


_TRUTH_LINE = re.compile(rb"\s*([1-9][0-9]*)?\s*")  # blank lines allowed, as read_categories does
_MAX_TRUTH_LINE = 40  # bytes; reading at most this much per line bounds memory on garbage


def check_truth(path: str | os.PathLike) -> None:
    """Raise FetchError naming `path` and the line unless each line is one positive integer."""
    with open(path, "rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(_MAX_TRUTH_LINE + 1), b""), start=1):
            too_long = len(line) > _MAX_TRUTH_LINE
            if too_long or not _TRUTH_LINE.fullmatch(line):
                shown = line[:_MAX_TRUTH_LINE] + (b"..." if too_long else b"")
                raise FetchError(
                    f"{os.fspath(path)}: line {number}: {shown!r} is not a row index "
                    "(a truth file holds one positive integer per line)"
                )


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


def _read_manifest(manifest: Path) -> dict:
    if not manifest.exists():
        return {}
    try:
        entries = json.loads(manifest.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise FetchError(f"{manifest}: not a JSON manifest ({err}); repair or delete it") from None
    if not isinstance(entries, dict):
        raise FetchError(f"{manifest}: not a JSON manifest (not an object); repair or delete it")
    return entries


def record_manifest(manifest: Path, record: FetchRecord, *, name: str | None = None) -> None:
    """Add or update `record` in the JSON manifest {name: {url, size, sha256, fetched_at}}.

    `name` defaults to the file's path relative to the manifest's folder. The update holds
    an flock on `manifest.lock` and replaces the manifest atomically.
    """
    manifest = Path(manifest)
    key = name if name is not None else _manifest_key(manifest, record.path)
    with _writing("recording the download", manifest), _locked(manifest.with_name(manifest.name + ".lock")):
        entries = _read_manifest(manifest)
        entries[key] = {
            "url": record.url,
            "size": record.size,
            "sha256": record.sha256,
            "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


# -------------------------------------------------------------------- CLI


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spdnn.fetch", description=__doc__.split("\n")[0])
    parser.add_argument("url", help="URL, or a path relative to --base")
    parser.add_argument("dest", type=Path, help="file to write (through DEST.part, renamed once complete and checked)")
    parser.add_argument("--base", help="base URL or local folder the url is relative to")
    parser.add_argument("--sha256", help="expected SHA-256 of the file (hex)")
    parser.add_argument("--size", type=int, help="expected size of the file in bytes")
    parser.add_argument("--manifest", type=Path, help="JSON manifest to record the file in")
    parser.add_argument(
        "--retries", type=_count, default=5, help="further attempts after a transient failure (default 5)"
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help=f"first back-off in seconds, doubling up to {MAX_BACKOFF:g} (default 1)",
    )
    parser.add_argument(
        "--stall-timeout",
        "--timeout",
        dest="stall_timeout",
        type=_positive,
        default=DEFAULT_STALL,
        help=f"fail the attempt when a read waits this long (default {DEFAULT_STALL:g})",
    )
    parser.add_argument(
        "--deadline",
        type=_positive,
        default=DEFAULT_DEADLINE,
        help=f"seconds for the whole fetch, retries included (default {DEFAULT_DEADLINE:g})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a FetchError is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        url = url_for(args.base, args.url) if args.base else args.url
        record = fetch(
            url,
            args.dest,
            sha256=args.sha256,
            size=args.size,
            retries=args.retries,
            backoff=args.backoff,
            stall_timeout=args.stall_timeout,
            deadline=args.deadline,
            progress=not args.no_progress,
        )
        if args.manifest:
            record_manifest(args.manifest, record)
    except FetchError as err:
        print(f"spdnn.fetch: error: {err}", file=sys.stderr)
        return 2
    print(f"{record.path}  {record.size} bytes  sha256 {record.sha256}  {record.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
