"""Streamed parsing of tab-separated files with pyarrow: one parser, given a column spec.

`iter_table` reads any headerless TSV whose columns are described by `Column`s (name, type,
bounds or allowed values); the challenge's `row<TAB>col<TAB>value` files (`iter_triples`)
and the DAG format's edge and node files (`spdnn.dag.fileformat`) are two specs of it, so
both give the same file:line errors.

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
from typing import IO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import DataError

Opener = Callable[[], IO[bytes]]

# A legal `row\tcol\tvalue` line is about 30 bytes; the limit is far above it and only bounds
# what a hostile line can cost (memory, and the size of the error message).
MAX_LINE_BYTES = 256
QUOTE_CHARS = 80  # an error message quotes at most this much of a line

# What a field may look like (as pyarrow reads numbers: spaces around them are allowed; no '_')
_INT = re.compile(r" *-?[0-9]+ *")
_FLOAT = re.compile(
    r" *(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan|infinity)) *", re.IGNORECASE
)
_DIGITS = re.compile(r"[0-9]+")  # a truth row index: plain ASCII digits (int() also takes '2_87', '٣')
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float32(), "str": pa.string()}
_SYNTAX = {"int": _INT, "float": _FLOAT}  # str fields take any text
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


@dataclass(frozen=True)
class Column:
    """One field of a TSV line: what `iter_table` checks it against and how errors name it.

    `name` names the field's text ("col 'x' is not a number"), `label` (default: name) its
    value against the bounds ("column index 11 outside 1..10"). Ints may have inclusive
    bounds `low` and `high`; floats must be finite float32; a str column with `choices` is
    returned as int8 codes (the index into choices), any other value being an error.
    """

    name: str
    kind: Literal["int", "float", "str"]
    low: int | None = None
    high: int | None = None
    label: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def bound_label(self) -> str:
        return self.label or self.name


Spec = tuple[Column, ...]


def triples_spec(n_rows: int | None, n_cols: int | None) -> Spec:
    """The challenge's `row<TAB>col<TAB>value` lines, indices 1-based (no bound where None)."""
    return (
        Column("row", "int", low=None if n_rows is None else 1, high=n_rows, label="row index"),
        Column("col", "int", low=None if n_cols is None else 1, high=n_cols, label="column index"),
        Column("value", "float"),
    )


@dataclass
class TableBlock:
    """One parsed block: each column's values (int64, float32, int8 codes or str objects) and the
    file line of its first entry."""

    first_line: int
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


@dataclass
class Block:
    """One parsed block of triples: 1-based indices as read, values, and the file line of its first entry."""

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
    for block in iter_table(open_text, name, triples_spec(n_rows, n_cols), block_size, max_bytes):
        c = block.columns
        yield Block(block.first_line, c["row"], c["col"], c["value"])


def iter_table(
    open_text: Opener,
    name: str,
    columns: Spec,
    block_size: int = 16 << 20,
    max_bytes: int | None = None,
) -> Iterator[TableBlock]:
    """Yield checked blocks of a headerless TSV with the given columns.

    `open_text` as for `iter_triples`. Every field must be of its column's type and within
    its bounds or choices, lines at most MAX_LINE_BYTES and the whole text at most
    `max_bytes` (if given); else DataError naming the file and the first bad line.
    """
    stream = LimitedStream(open_text(), name, max_bytes)
    line = 1  # the first line of the block being read
    reader = None
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=[c.name for c in columns], block_size=block_size, use_threads=True
            ),
            # empty lines are errors, not skipped: skipping would shift every later line number
            parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c.name: _ARROW_TYPES[c.kind] for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
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
            if any(batch.column(i).null_count for i in range(len(columns))):
                raise pa.ArrowInvalid("empty field")
            block = TableBlock(line, {c.name: _values(batch.column(i), c) for i, c in enumerate(columns)})
            if not _block_ok(block, columns):
                stream.close()
                diagnose(open_text, name, columns, start_line=line)
                _check_block(block, name, columns)  # diagnose found nothing: report what the block says
            yield block
            line += batch.num_rows
    except (pa.ArrowInvalid, _Overlong) as err:
        stream.close()
        diagnose(open_text, name, columns, start_line=line)
        raise DataError(name, None, f"could not parse: {quote(str(err), 200)}") from err
    finally:
        # Released now, not whenever the traceback that holds this frame goes (at exit, say)
        reader = None  # noqa: F841
        stream.close()
    if not seen:
        raise DataError(name, None, "file is empty")


def read_table(
    open_text: Opener, name: str, columns: Spec, block_size: int = 16 << 20, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """A whole checked TSV: each column's values in file order (entry i is line i + 1)."""
    blocks = list(iter_table(open_text, name, columns, block_size, max_bytes))
    return {c.name: np.concatenate([b.columns[c.name] for b in blocks]) for c in columns}


def _values(array: pa.Array, column: Column) -> np.ndarray:
    if column.choices is not None:  # codes; -1 for a value not among the choices
        codes = pc.fill_null(pc.index_in(array, value_set=pa.array(column.choices, pa.string())), -1)
        return codes.to_numpy().astype(np.int8)
    return array.to_numpy(zero_copy_only=False)


def _bad_mask(values: np.ndarray, column: Column) -> np.ndarray | None:
    """Where a block's parsed values break the column's rules; None when it has none to check."""
    if column.kind == "float":
        return ~np.isfinite(values)
    if column.choices is not None:
        return values < 0
    if column.kind == "int" and (column.low is not None or column.high is not None):
        bad = np.zeros(len(values), dtype=bool)
        if column.low is not None:
            bad |= values < column.low
        if column.high is not None:
            bad |= values > column.high
        return bad
    return None


def _block_ok(block: TableBlock, columns: Spec) -> bool:
    for column in columns:
        values = block.columns[column.name]
        if column.kind == "int" and column.choices is None:  # min and max: cheaper than a mask
            if (column.low is not None and values.min() < column.low) or (
                column.high is not None and values.max() > column.high
            ):
                return False
            continue
        bad = _bad_mask(values, column)
        if bad is not None and bad.any():
            return False
    return True


def _check_block(block: TableBlock, name: str, columns: Spec) -> None:
    """Raise DataError at the first bad entry of a block (the fallback should `diagnose` find none)."""
    for column in columns:
        values = block.columns[column.name]
        bad = _bad_mask(values, column)
        hits = np.flatnonzero(bad) if bad is not None else np.zeros(0, dtype=np.int64)
        if hits.size:
            i = int(hits[0])
            if column.kind == "int":
                problem = _bound_problem(column, str(values[i]))
            elif column.kind == "float":
                problem = f"{column.name} '{values[i]}' is not finite"
            else:
                problem = f"{column.name} value is not one of {', '.join(column.choices or ())}"
            raise DataError(name, block.first_line + i, problem)


def _bound_problem(column: Column, written: str) -> str:
    label, low, high = column.bound_label, column.low, column.high
    if high is None:
        return f"{label} {written} is not a positive integer" if low == 1 else f"{label} {written} is below {low}"
    if low is None:
        return f"{label} {written} is above {high}"
    return f"{label} {written} outside {low}..{high}"


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


def line_problem(raw: bytes, columns: Spec) -> str | None:
    """What is wrong with one line (without its newline) of a TSV with these columns, or None."""
    if len(raw) > MAX_LINE_BYTES:
        return f"line longer than {MAX_LINE_BYTES} bytes: {quote(raw)}"
    text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
    fields = text.split("\t")
    if len(fields) != len(columns):
        return f"expected {len(columns)} tab-separated fields, found {len(fields)}: {quote(text)}"
    for column, field in zip(columns, fields):
        pattern = _SYNTAX.get(column.kind)
        if pattern is not None and not pattern.fullmatch(field):
            return f"{column.name} {quote(field)} is not a number"
    for column, field in zip(columns, fields):
        problem = _field_problem(column, field)
        if problem is not None:
            return problem
    return None


def _field_problem(column: Column, field: str) -> str | None:
    """A syntactically valid field's problem with its column's bounds, finiteness or choices."""
    if column.kind == "int":
        # Python ints do not overflow: a 20-digit index is reported as written
        value = int(field)
        if (column.low is not None and value < column.low) or (column.high is not None and value > column.high):
            return _bound_problem(column, field.strip())
    elif column.kind == "float":
        number = float(field)
        if math.isnan(number) or (math.isinf(number) and re.search("[iI]", field)):
            return f"{column.name} {quote(field.strip())} is not finite"
        with np.errstate(over="ignore"):
            if not np.isfinite(np.float32(number)):
                return f"{column.name} {quote(field.strip())} overflows float32"
    elif column.choices is not None and field not in column.choices:
        return f"{column.name} {quote(field)} is not one of {', '.join(column.choices)}"
    return None


def diagnose(open_text: Opener, name: str, columns: Spec, start_line: int = 1) -> None:
    """Scan the text from `start_line` on and raise DataError at the first bad line (too long,
    the wrong number of fields, a field not of its column's type, bounds or choices, a float
    not a finite float32)."""
    number = start_line - 1
    with open_text() as stream:
        for number, raw in scan_lines(stream, start_line):
            problem = line_problem(raw, columns)
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
