"""Streamed parsing of the challenge's `row<TAB>col<TAB>value` TSV files with pyarrow.

The fast path is pyarrow's CSV reader, block by block, so a file of billions of lines is
never held in memory. Every byte it reads first passes `LimitedStream`, which stops at the
first line longer than MAX_LINE_BYTES (or past a total size), so hostile input (a
decompression bomb of NUL bytes, one endless line) costs no more memory than one block.
When a block is rejected, `diagnose` re-reads the text line by line from that block on to
name the first bad line; that slow scan runs only on the error path.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import DataError

Opener = Callable[[], IO[bytes]]

# A legal `row\tcol\tvalue` line is about 30 bytes; the limit is far above it and only bounds
# what a hostile line can cost (memory, and the size of the error message).
MAX_LINE_BYTES = 256
QUOTE_CHARS = 80  # an error message quotes at most this much of a line

_COLUMNS = ["row", "col", "value"]
# What a field may look like (as pyarrow reads numbers: spaces around them are allowed; no '_')
_INT = re.compile(r" *-?[0-9]+ *")
_FLOAT = re.compile(
    r" *(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan|infinity)) *", re.IGNORECASE
)
_DIGITS = re.compile(r"[0-9]+")  # a truth row index: plain ASCII digits (int() also takes '2_87', '٣')
_TYPES = {"row": pa.int64(), "col": pa.int64(), "value": pa.float32()}
_NEWLINE = 10


def quote(raw: bytes | str, limit: int = QUOTE_CHARS) -> str:
    """repr() of (the start of) a line, at most about `limit` characters, '...' when cut."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    cut = min(len(text), limit)
    while cut and len(repr(text[:cut])) > limit + 2:  # escapes ('\x00') take several characters
        cut -= 1
    return repr(text[:cut]) + ("..." if cut < len(text) else "")


class _Overlong(Exception):
    """A line longer than the limit went past LimitedStream; `diagnose` names it."""


class LimitedStream(io.RawIOBase):
    """A read-only view of a binary stream that raises as soon as a line is longer than
    `max_line` bytes (without its newline) or the total passes `max_bytes`.

    The check runs on each chunk as it is read (one vectorised pass), so it bounds memory
    while parsing, before any consumer buffers an endless line.
    """

    def __init__(self, stream: IO[bytes], name: str, max_bytes: int | None = None, max_line: int = MAX_LINE_BYTES):
        super().__init__()
        self._stream, self._name = stream, name
        self._max_bytes, self._max_line = max_bytes, max_line
        self._total = 0  # bytes read so far
        self._run = 0  # length of the line still open at the end of the last chunk

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._check(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check(self, data: bytes) -> None:
        self._total += len(data)
        if self._max_bytes is not None and self._total > self._max_bytes:
            raise DataError(
                self._name, None, f"more than {self._max_bytes} bytes of text, the most a legal file can hold"
            )
        first, last = data.find(b"\n"), data.rfind(b"\n")
        if first < 0:
            self._run += len(data)
        elif self._run + first > self._max_line or not _lines_within(
            memoryview(data)[first : last + 1], self._max_line
        ):
            raise _Overlong()
        else:
            self._run = len(data) - last - 1
        if self._run > self._max_line:
            raise _Overlong()

    def close(self) -> None:
        self._stream.close()
        super().close()


def _lines_within(text: memoryview, max_line: int, piece: int = 1 << 20) -> bool:
    """Whether no two consecutive newlines of `text` (which starts and ends with one) are more than
    max_line + 1 bytes apart. Works in 1 MiB pieces: small temporaries stay in cache."""
    data = np.frombuffer(text, dtype=np.uint8)
    window = (max_line // 2 + 1) // 8 * 8
    if window >= 8:
        # Cheap sufficient test: if every aligned window holds a newline, lines are shorter than
        # two windows. 8 booleans read as one uint64 make the per-window test one OR-reduce.
        whole = len(data) // window * window
        step = max(window, piece // window * window)
        if all(
            np.bitwise_or.reduce(
                (data[lo : min(lo + step, whole)] == _NEWLINE).view(np.uint64).reshape(-1, window // 8), axis=1
            ).all()
            for lo in range(0, whole, step)
        ):
            return True
    ends = np.flatnonzero(data == _NEWLINE)
    return int(np.diff(ends).max(initial=1)) - 1 <= max_line


@dataclass
class Block:
    """One parsed block: 1-based indices as read, values, and the file line of its first entry."""

    first_line: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def iter_triples(
    open_text: Opener,
    name: str,
    n_rows: int,
    n_cols: int,
    block_size: int = 16 << 20,
    max_bytes: int | None = None,
) -> Iterator[Block]:
    """Yield checked blocks of a triples TSV.

    `open_text` returns a fresh binary stream of the (decompressed) text each time it is
    called: once for the fast path, and once more to locate a line if parsing fails.
    Indices must lie in 1..n_rows and 1..n_cols, values must be finite float32, lines at
    most MAX_LINE_BYTES and the whole text at most `max_bytes` (if given), else DataError.
    """
    stream = LimitedStream(open_text(), name, max_bytes)
    line = 1  # the first line of the block being read
    reader = None
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=_COLUMNS, block_size=block_size, use_threads=True),
            # empty lines are errors, not skipped: skipping would shift every later line number
            parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=_TYPES, strings_can_be_null=False),
        )
        seen = False
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if batch.num_rows == 0:
                continue
            seen = True
            if any(batch.column(i).null_count for i in range(3)):
                raise pa.ArrowInvalid("empty field")
            block = Block(line, batch.column(0).to_numpy(), batch.column(1).to_numpy(), batch.column(2).to_numpy())
            if not _block_ok(block, n_rows, n_cols):
                stream.close()
                diagnose(open_text, name, n_rows, n_cols, start_line=line)
                _check_block(block, name, n_rows, n_cols)  # diagnose found nothing: report what the block says
            yield block
            line += batch.num_rows
    except (pa.ArrowInvalid, _Overlong) as err:
        stream.close()
        diagnose(open_text, name, n_rows, n_cols, start_line=line)
        raise DataError(name, None, f"could not parse: {quote(str(err), 200)}") from err
    finally:
        # Released now, not whenever the traceback that holds this frame goes (at exit, say)
        reader = None  # noqa: F841
        stream.close()
    if not seen:
        raise DataError(name, None, "file is empty")


def _block_ok(block: Block, n_rows: int, n_cols: int) -> bool:
    rows, cols = block.rows, block.cols
    return bool(
        rows.min() >= 1
        and rows.max() <= n_rows
        and cols.min() >= 1
        and cols.max() <= n_cols
        and np.isfinite(block.values).all()
    )


def _check_block(block: Block, name: str, n_rows: int, n_cols: int) -> None:
    """Raise DataError at the first bad entry of a block (the fallback should `diagnose` find none)."""
    for label, values, limit in (("row", block.rows, n_rows), ("column", block.cols, n_cols)):
        bad = np.flatnonzero((values < 1) | (values > limit))
        if bad.size:
            i = int(bad[0])
            raise DataError(name, block.first_line + i, f"{label} index {values[i]} outside 1..{limit}")
    bad = np.flatnonzero(~np.isfinite(block.values))
    if bad.size:
        i = int(bad[0])
        raise DataError(name, block.first_line + i, f"value '{block.values[i]}' is not finite")


def scan_lines(
    stream: IO[bytes], start_line: int = 1, chunk: int = 1 << 20, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line without its newline) from `start_line` on, in bounded memory.

    Lines before `start_line` are skipped by counting newlines. A line longer than
    `max_line` is yielded cut to max_line + 1 bytes, and the scan ends there: the caller
    sees it is too long and stops.
    """
    number, carry = 1, b""
    while data := stream.read(chunk):
        newlines = data.count(b"\n")
        if number + newlines < start_line:  # the whole chunk is before start_line
            number += newlines
            carry = data[data.rfind(b"\n") + 1 :] if newlines else carry + data
        else:
            pieces = (carry + data).split(b"\n")
            carry = pieces.pop()
            for piece in pieces:
                if number >= start_line:
                    yield number, piece[: max_line + 1]
                    if len(piece) > max_line:
                        return
                number += 1
        if len(carry) > max_line:
            if number >= start_line:
                yield number, carry[: max_line + 1]
            return
    if carry and number >= start_line:
        yield number, carry


def line_problem(raw: bytes, n_rows: int | None = None, n_cols: int | None = None) -> str | None:
    """What is wrong with one `row\\tcol\\tvalue` line (without its newline), or None."""
    if len(raw) > MAX_LINE_BYTES:
        return f"line longer than {MAX_LINE_BYTES} bytes: {quote(raw)}"
    text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
    fields = text.split("\t")
    if len(fields) != 3:
        return f"expected 3 tab-separated fields, found {len(fields)}: {quote(text)}"
    for label, field, pattern in zip(_COLUMNS, fields, (_INT, _INT, _FLOAT)):
        if not pattern.fullmatch(field):
            return f"{label} {quote(field)} is not a number"
    for label, field, limit in (("row", fields[0], n_rows), ("column", fields[1], n_cols)):
        # Python ints do not overflow: a 20-digit index is reported as written
        if limit is not None and not 1 <= int(field) <= limit:
            return f"{label} index {field.strip()} outside 1..{limit}"
    value = float(fields[2])
    if math.isnan(value) or (math.isinf(value) and re.search("[iI]", fields[2])):
        return f"value {quote(fields[2].strip())} is not finite"
    with np.errstate(over="ignore"):
        if not np.isfinite(np.float32(value)):
            return f"value {quote(fields[2].strip())} overflows float32"
    return None


def diagnose(
    open_text: Opener, name: str, n_rows: int | None = None, n_cols: int | None = None, start_line: int = 1
) -> None:
    """Scan the text from `start_line` on and raise DataError at the first bad line (too long,
    not `int int float`, an index outside 1..n_rows or 1..n_cols, a value not a finite float32)."""
    number = start_line - 1
    with open_text() as stream:
        for number, raw in scan_lines(stream, start_line):
            problem = line_problem(raw, n_rows, n_cols)
            if problem is not None:
                raise DataError(name, number, problem)
    if number == 0:
        raise DataError(name, None, "file is empty")


def read_categories(open_text: Opener, name: str, n_inputs: int | None = None) -> np.ndarray:
    """Read a truth file: 1-based row indices, one per line. Returns them 0-based, sorted.

    An empty truth file is valid (no input survived); indices must be plain digits, positive,
    unique and at most `n_inputs` when given. The file is streamed with bounded lines.
    """
    values, lines = [], []
    with open_text() as stream:
        for number, raw in scan_lines(stream):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(name, number, f"line longer than {MAX_LINE_BYTES} bytes: {quote(raw)}")
            field = raw.decode("utf-8", errors="replace").strip()
            if not field:
                continue
            if not _DIGITS.fullmatch(field):
                raise DataError(name, number, f"{quote(field)} is not a row index")
            value = int(field)
            if value < 1 or (n_inputs is not None and value > n_inputs):
                limit = f"1..{n_inputs}" if n_inputs is not None else ">= 1"
                raise DataError(name, number, f"row index {value} outside {limit}")
            values.append(value)
            lines.append(number)
            if n_inputs is not None and len(values) > n_inputs:
                break  # more indices than rows: one repeats, found below without reading further
    rows = np.asarray(values, dtype=np.int64) - 1
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    dup = np.flatnonzero(np.diff(ordered) == 0)
    if dup.size:
        k = dup[np.argmin(order[dup + 1])]  # the earliest line that repeats an earlier one
        raise DataError(
            name, lines[order[k + 1]], f"row index {ordered[k] + 1} appears twice (also on line {lines[order[k]]})"
        )
    return ordered
