"""Streamed parsing of the challenge's `row<TAB>col<TAB>value` TSV files with pyarrow.

The fast path is pyarrow's CSV reader, block by block, so a file of billions of lines is
never held in memory. When pyarrow rejects a block, `diagnose` re-reads the text line by
line to name the first bad line; that slow scan runs only on the error path.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import IO, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import DataError

Opener = Callable[[], IO[bytes]]

_COLUMNS = ["row", "col", "value"]
# What a field may look like (as pyarrow reads numbers: spaces around them are allowed; no '_')
_INT = re.compile(r" *-?[0-9]+ *")
_FLOAT = re.compile(r" *(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan|infinity)) *",
                    re.IGNORECASE)
_TYPES = {"row": pa.int64(), "col": pa.int64(), "value": pa.float32()}


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
) -> Iterator[Block]:
    """Yield checked blocks of a triples TSV.

    `open_text` returns a fresh binary stream of the (decompressed) text each time it is
    called: once for the fast path, and once more to locate a line if parsing fails.
    Indices must lie in 1..n_rows and 1..n_cols and values must be finite, else DataError.
    """
    stream = open_text()
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=_COLUMNS, block_size=block_size, use_threads=True),
            # empty lines are errors, not skipped: skipping would shift every later line number
            parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=_TYPES, strings_can_be_null=False),
        )
        line = 1
        seen = False
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if batch.num_rows == 0:
                continue
            seen = True
            rows = batch.column(0)
            if rows.null_count or batch.column(1).null_count or batch.column(2).null_count:
                raise pa.ArrowInvalid("empty field")
            block = Block(line, rows.to_numpy(), batch.column(1).to_numpy(), batch.column(2).to_numpy())
            _check_block(block, name, n_rows, n_cols)
            yield block
            line += batch.num_rows
    except pa.ArrowInvalid as err:
        stream.close()
        diagnose(open_text, name)
        raise DataError(name, None, f"could not parse: {err}") from err
    finally:
        stream.close()
    if not seen:
        raise DataError(name, None, "file is empty")


def _check_block(block: Block, name: str, n_rows: int, n_cols: int) -> None:
    for label, values, limit in (("row", block.rows, n_rows), ("column", block.cols, n_cols)):
        bad = np.flatnonzero((values < 1) | (values > limit))
        if bad.size:
            i = int(bad[0])
            raise DataError(name, block.first_line + i, f"{label} index {values[i]} outside 1..{limit}")
    bad = np.flatnonzero(~np.isfinite(block.values))
    if bad.size:
        i = int(bad[0])
        raise DataError(name, block.first_line + i, f"value '{block.values[i]}' is not finite")


def diagnose(open_text: Opener, name: str) -> None:
    """Scan the text line by line and raise DataError at the first line that is not `int int float`."""
    number = 0
    with open_text() as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            fields = text.split("\t")
            if len(fields) != 3:
                raise DataError(name, number, f"expected 3 tab-separated fields, found {len(fields)}: {text!r}")
            for label, field, pattern in zip(_COLUMNS, fields, (_INT, _INT, _FLOAT)):
                if not pattern.fullmatch(field):
                    raise DataError(name, number, f"{label} {field!r} is not a number")
            if not math.isfinite(float(fields[2])):
                raise DataError(name, number, f"value {fields[2]!r} is not finite")
    if number == 0:
        raise DataError(name, None, "file is empty")


def read_categories(open_text: Opener, name: str, n_inputs: int | None = None) -> np.ndarray:
    """Read a truth file: 1-based row indices, one per line. Returns them 0-based, sorted.

    An empty truth file is valid (no input survived); indices must be positive, unique and
    at most `n_inputs` when given.
    """
    with open_text() as stream:
        text = stream.read().decode("utf-8", errors="replace")
    values = []
    for number, raw in enumerate(text.splitlines(), start=1):
        field = raw.strip()
        if not field:
            continue
        try:
            value = int(field)
        except ValueError:
            raise DataError(name, number, f"{field!r} is not a row index") from None
        if value < 1 or (n_inputs is not None and value > n_inputs):
            limit = f"1..{n_inputs}" if n_inputs is not None else ">= 1"
            raise DataError(name, number, f"row index {value} outside {limit}")
        values.append(value)
    rows = np.asarray(values, dtype=np.int64) - 1
    ordered = np.sort(rows)
    dup = np.flatnonzero(np.diff(ordered) == 0)
    if dup.size:
        raise DataError(name, None, f"row index {ordered[dup[0]] + 1} appears twice")
    return ordered
