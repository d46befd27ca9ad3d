"""Property-based: damaged TSV text either parses exactly or raises DataError naming the line."""

from __future__ import annotations

import io
import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spdnn.io.errors import DataError
from spdnn.io.tsv import MAX_LINE_BYTES, iter_triples, read_categories

N_ROWS, N_COLS = 50, 40
_INT = re.compile(r" *-?[0-9]+ *")
_FLOAT = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")


def reference(text: str):
    """An obviously-correct line-by-line parser: (rows, cols, values) or (line, None) on the first bad line."""
    rows, cols, vals = [], [], []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return None, "empty"
    for number, line in enumerate(lines, start=1):
        if len(line.encode()) > MAX_LINE_BYTES:
            return number, None
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3 or not (
            _INT.fullmatch(fields[0]) and _INT.fullmatch(fields[1]) and _FLOAT.fullmatch(fields[2])
        ):
            return number, None
        with np.errstate(over="ignore"):
            r, c, v = int(fields[0]), int(fields[1]), np.float32(float(fields[2]))
        if not (1 <= r <= N_ROWS and 1 <= c <= N_COLS and np.isfinite(v)):
            return number, None
        rows.append(r)
        cols.append(c)
        vals.append(v)
    return None, (rows, cols, vals)


lines = st.tuples(
    st.integers(1, N_ROWS), st.integers(1, N_COLS), st.sampled_from(["0.0625", "1", "-0.3", "2.5e-1", "32"])
).map(lambda t: "{}\t{}\t{}\n".format(*t))
damage = st.one_of(
    st.just(("none", 0, "")),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.sampled_from(
            list("0\t\n x.-e9+_\0") + ["nan", "inf", "\t\t", "99999999999999999999", "e39", " " * 300, "0" * 260]
        ),
    ),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just("")),
)


def damaged(text: str, how) -> str:
    kind, at, what = how
    if not text:
        return text
    at %= len(text)
    if kind == "insert":
        return text[:at] + what + text[at:]
    if kind == "delete":
        return text[:at] + text[at + 1 :]
    if kind == "truncate":
        return text[:at]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, min_size=0, max_size=60), damage, st.sampled_from([64, 256, 1 << 20]))
def test_triples_parse_exactly_or_name_the_line(body, how, block_size):
    text = damaged("".join(body), how)
    data = text.encode()
    bad_line, expected = reference(text)
    try:
        blocks = list(iter_triples(lambda: io.BytesIO(data), "f.tsv", N_ROWS, N_COLS, block_size=block_size))
    except DataError as err:
        assert err.source == "f.tsv"
        assert expected in (None, "empty"), f"rejected a valid file: {err}"
        if bad_line is not None:
            assert err.line == bad_line, f"{err} (expected line {bad_line})"
        return
    assert expected not in (None, "empty"), f"accepted a bad file (line {bad_line}): {text!r}"
    rows, cols, vals = expected
    assert np.concatenate([b.rows for b in blocks]).tolist() == rows
    assert np.concatenate([b.cols for b in blocks]).tolist() == cols
    assert np.array_equal(np.concatenate([b.values for b in blocks]), np.array(vals, dtype=np.float32))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 99), max_size=20, unique=True), damage)
def test_categories_parse_exactly_or_raise(values, how):
    text = damaged("".join(f"{v}\n" for v in values), how)
    try:
        got = read_categories(lambda: io.BytesIO(text.encode()), "t.tsv", 100)
    except DataError as err:
        assert err.source == "t.tsv"
        return
    tokens = [t.strip() for t in text.splitlines() if t.strip()]
    assert all(t.isascii() and t.isdigit() for t in tokens), f"accepted a token not of plain digits: {tokens}"
    want = sorted(int(t) - 1 for t in tokens)
    assert got.tolist() == want and all(0 <= v < 100 for v in want)


class _Chunks(io.RawIOBase):
    """A stream that returns at most the next of `sizes` bytes per read: chunk boundaries anywhere."""

    def __init__(self, data: bytes, sizes: list[int]):
        super().__init__()
        self.data, self.sizes, self.pos = data, sizes, 0

    def read(self, size: int = -1) -> bytes:
        step = self.sizes[self.pos % len(self.sizes)] if self.sizes else size
        piece = self.data[: min(size, step)]
        self.data = self.data[len(piece) :]
        self.pos += 1
        return piece


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 700), min_size=1, max_size=30),
    st.booleans(),
    st.lists(st.integers(1, 2000), max_size=5),
    st.sampled_from([16, 40, 256]),
)
def test_line_limit_is_exact_wherever_reads_split_the_text(lengths, final_newline, sizes, max_line):
    from spdnn.io.tsv import LimitedStream, _Overlong

    text = b"\n".join(b"x" * n for n in lengths) + (b"\n" if final_newline else b"")
    stream = LimitedStream(_Chunks(text, sizes), "f.tsv", max_line=max_line)
    try:
        while stream.read(1 << 12):
            pass
    except _Overlong:
        assert max(lengths) > max_line
        return
    assert max(lengths) <= max_line
