"""Hostile sizes: decompression bombs, endless lines and oversized tar members fail fast, in
bounded memory, with a short message naming the file, the line or member, and the limit."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from spdnn.io import cache
from spdnn.io.errors import DataError
from spdnn.io.tsv import MAX_LINE_BYTES, iter_triples, quote

from .conftest import butterfly_tsv, write_tar

MB = 1 << 20


def write_gzip(path: Path, head: bytes = b"", zeros: int = 0) -> None:
    """A gzip file of `head` then `zeros` NUL bytes, made in 1 MiB steps (never `zeros` in memory)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(path, "wb") as out:
        out.write(comp.compress(head))
        for _ in range(zeros // MB):
            out.write(comp.compress(bytes(MB)))
        out.write(comp.flush())


class Zeros(io.RawIOBase):
    """`size` NUL bytes as a stream, for tarfile.addfile."""

    def __init__(self, size: int):
        super().__init__()
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def write_tar_of_zeros(path: Path, name: str, size: int) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size)))


# The conversion runs in a fresh interpreter, so that its peak RSS is its own (this process's
# peak already holds whatever earlier tests used).
_MEASURE = """
import json, resource, sys
from spdnn.io import cache
from spdnn.io.errors import DataError
kind, src, out = sys.argv[1:4]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if kind == "inputs":
        cache.convert_inputs(src, out, 1024, progress=False)
    else:
        cache.convert_weights(src, out, 1024, 1, progress=False)
    message = None
except DataError as err:
    message = str(err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"message": message, "growth_kb": after - before}))
"""


def convert_measured(kind: str, src: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind, str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the log is what stderr would hold: a bomb must not turn into a huge log either
    assert len(proc.stderr) < 2000
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_nul_bomb_inputs_fails_in_bounded_memory(tmp_path):
    # 200 MB of NUL bytes compress to ~200 KB; before the fix the whole "line" was read, decoded
    # and quoted (peak memory several times its size, a message as long as the line).
    bomb = tmp_path / "sparse-images-1024.tsv.gz"
    write_gzip(bomb, zeros=200 * MB)
    assert bomb.stat().st_size < 1 * MB
    result = convert_measured("inputs", bomb, tmp_path / "x.arrow")
    message = result["message"]
    assert message is not None and message.startswith(f"{bomb}:1: line longer than {MAX_LINE_BYTES} bytes: ")
    assert message.endswith("...") and len(message) < 500
    assert result["growth_kb"] < 100 * 1024, result  # a few 16 MiB blocks, not the 200 MB line
    assert not (tmp_path / "x.arrow").exists()


@pytest.mark.slow
def test_bomb_tar_member_is_refused_before_it_is_read(tmp_path):
    # A member far larger than a layer can be (32 x 1024 lines of at most 256 bytes).
    archive = tmp_path / "neuron1024.tar.gz"
    write_tar_of_zeros(archive, "neuron1024/n1024-l1.tsv", 200 * MB)
    result = convert_measured("weights", archive, tmp_path / "w.arrow")
    limit = cache.layer_max_bytes(1024)
    assert result["message"] == (
        f"{archive}!neuron1024/n1024-l1.tsv: member of {200 * MB} bytes is larger than the {limit} bytes "
        f"a legal layer can hold (32 x N lines of at most {MAX_LINE_BYTES} bytes)"
    )
    assert result["growth_kb"] < 100 * 1024, result


def test_layer_limit_follows_the_layer_size():
    assert cache.layer_max_bytes(1024) == 32 * 1024 * (MAX_LINE_BYTES + 1)
    assert cache.layer_max_bytes(65536) > 10 * 2**21 * 23  # 10x the real 65536 layers (~23 bytes a line)


def test_long_line_inside_a_member_names_member_line_and_limit(tmp_path):
    lines = butterfly_tsv(64)
    lines[40] = "7\t" + " " * 300 + "9\t0.0625\n"  # pyarrow would read this one: the limit must not
    archive = tmp_path / "neuron64.tar.gz"
    write_tar(archive, {"neuron64/n64-l1.tsv": "".join(lines).encode()})
    with pytest.raises(DataError) as err:
        cache.convert_weights(archive, tmp_path / "w.arrow", 64, 1, progress=False)
    assert str(err.value).startswith(f"{archive}!neuron64/n64-l1.tsv:41: line longer than 256 bytes: '7\\t   ")
    assert len(str(err.value)) < 500


def test_endless_line_at_the_end_of_a_block_is_caught_in_the_fast_path():
    # A long line spread over several reads: the running length carries over between reads.
    text = b"1\t1\t1\n" * 1000 + b"2\t2\t" + b"5" * 5000 + b"\n"
    with pytest.raises(DataError, match=r"^x.tsv:1001: line longer than 256 bytes: '2\\t2\\t5555"):
        list(iter_triples(lambda: io.BytesIO(text), "x.tsv", 10, 10, block_size=1024))


@pytest.mark.parametrize("length", [MAX_LINE_BYTES, MAX_LINE_BYTES + 1])
def test_line_limit_is_exact(length):
    line = b"1\t1\t" + b"0" * (length - 5) + b"1"
    assert len(line) == length

    def parse():
        return list(iter_triples(lambda: io.BytesIO(b"1\t1\t1\n" + line + b"\n"), "x.tsv", 9, 9))

    if length <= MAX_LINE_BYTES:
        assert sum(len(b.rows) for b in parse()) == 2
    else:
        with pytest.raises(DataError, match=r"^x.tsv:2: line longer than 256 bytes"):
            parse()


def test_quote_is_short_whatever_the_line():
    assert quote(b"abc") == "'abc'"
    assert quote(b"x" * 1000) == "'" + "x" * 80 + "'..."
    nul = quote(b"\0" * 1000)
    assert nul.startswith("'\\x00") and nul.endswith("'...") and len(nul) <= 90


def test_inputs_with_more_entries_than_the_matrix_holds(tmp_path):
    # 1 x 64 inputs hold 64 entries at most: the 65th line is an error as it arrives, without
    # waiting for the end of the file to find duplicates (memory stays what a legal file needs).
    path = tmp_path / "x.tsv.gz"
    write_gzip(path, b"1\t1\t1\n" * 65)
    with pytest.raises(DataError, match=rf"^{path}:65: more entries than a 1 x 64 matrix holds"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, n_inputs=1, progress=False)


def test_inputs_text_larger_than_a_legal_file(tmp_path):
    # 1 x 64 inputs in lines of at most 256 bytes: 64 x 257 bytes at most, counted as decompressed.
    path = tmp_path / "x.tsv.gz"
    write_gzip(path, (b"1\t1\t1" + b" " * 200 + b"\n") * 80)
    limit = cache.inputs_max_bytes(1, 64)
    with pytest.raises(DataError, match=rf"^{path}: more than {limit} bytes of text"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, n_inputs=1, progress=False)


def test_endless_garbage_after_the_tar_archive(tmp_path):
    archive = tmp_path / "neuron64.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = "".join(butterfly_tsv(64)).encode()
        info = tarfile.TarInfo("neuron64/n64-l1.tsv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    write_gzip(archive, buffer.getvalue(), zeros=cache.TAR_TRAILER_BYTES + MB)
    with pytest.raises(DataError, match=rf"^{archive}: more than {cache.TAR_TRAILER_BYTES} bytes after the end"):
        cache.convert_weights(archive, tmp_path / "w.arrow", 64, 1, progress=False)
