"""TSV parsing: exact results on good files; one clear error naming file and line on bad ones."""

from __future__ import annotations

import gzip
import io
import re

import numpy as np
import pytest

from spdnn.io.errors import DataError
from spdnn.io.tsv import iter_triples, read_categories


def parse(text: str, n_rows: int = 10, n_cols: int = 10, block_size: int = 1 << 20):
    data = text.encode()
    blocks = list(iter_triples(lambda: io.BytesIO(data), "x.tsv", n_rows, n_cols, block_size=block_size))
    return (
        np.concatenate([b.rows for b in blocks]),
        np.concatenate([b.cols for b in blocks]),
        np.concatenate([b.values for b in blocks]),
    )


def test_parses_triples_exactly():
    rows, cols, vals = parse("1\t2\t0.0625\n3\t10\t1\n10\t1\t-2.5\n")
    assert rows.tolist() == [1, 3, 10]
    assert cols.tolist() == [2, 10, 1]
    assert vals.dtype == np.float32
    assert vals.tolist() == [0.0625, 1.0, -2.5]


def test_line_numbers_are_right_across_blocks():
    # Small blocks force several batches; the bad line must still be named exactly.
    lines = [f"{i % 9 + 1}\t{i % 7 + 1}\t0.5\n" for i in range(5000)]
    lines[4321] = "3\t11\t0.5\n"
    with pytest.raises(DataError) as err:
        parse("".join(lines), block_size=4096)
    assert err.value.line == 4322
    assert "column index 11 outside 1..10" in str(err.value)
    assert str(err.value).startswith("x.tsv:4322:")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("1\t2\t0.5\n2\t3\n", 2, "expected 3 tab-separated fields, found 2"),
        ("1\t2\t0.5\n2\tx\t0.5\n", 2, "col 'x' is not a number"),
        ("1\t2\t0.5\n2\t3\tabc\n", 2, "value 'abc' is not a number"),
        ("1\t2\t0.5\n0\t3\t0.5\n", 2, "row index 0 outside 1..10"),
        ("1\t2\t0.5\n11\t3\t0.5\n", 2, "row index 11 outside 1..10"),
        ("1\t2\tnan\n", 1, "value 'nan' is not finite"),
        ("1\t2\t0.5\n1\t3\tinf\n", 2, "value 'inf' is not finite"),
        ("1\t2\t0.5\n1\t2\t0.5\t7\n", 2, "expected 3 tab-separated fields, found 4"),
        # Python ints: a 20-digit index is out of range, as written, not an int64 overflow
        ("1\t2\t0.5\n99999999999999999999\t3\t0.5\n", 2, "row index 99999999999999999999 outside 1..10"),
        ("1\t-99999999999999999999\t0.5\n", 1, "column index -99999999999999999999 outside 1..10"),
        # float32 overflow is reported as written, not as the 'inf' it would become
        ("1\t2\t0.5\n1\t3\t1e39\n", 2, "value '1e39' overflows float32"),
        ("1\t2\t-3.5e38\n", 1, "value '-3.5e38' overflows float32"),
        ("1\t2\t1e400\n", 1, "value '1e400' overflows float32"),
        ("1\t2\t-Infinity\n", 1, "value '-Infinity' is not finite"),
        ("1\t2_0\t0.5\n", 1, "col '2_0' is not a number"),
        ("1\t2\t0.5\n\0\0\0\n", 2, "expected 3 tab-separated fields, found 1: '\\x00\\x00\\x00'"),
    ],
)
def test_bad_lines_name_file_line_and_problem(text, line, problem):
    with pytest.raises(DataError) as err:
        parse(text)
    assert err.value.source == "x.tsv"
    assert err.value.line == line
    assert problem in str(err.value)


def test_largest_float32_is_accepted():
    _, _, vals = parse("1\t2\t3.4028234e38\n")
    assert np.isfinite(vals).all()


def test_first_bad_line_of_a_block_is_reported_whatever_the_problem():
    # One block holds a bad value on line 2 and a bad row on line 3: line 2 is the first.
    with pytest.raises(DataError, match=r"^x.tsv:2: value 'nan' is not finite$"):
        parse("1\t2\t0.5\n1\t2\tnan\n11\t3\t0.5\n")
    with pytest.raises(DataError, match=r"^x.tsv:2: column index 0 outside 1..10$"):
        parse("1\t2\t0.5\n1\t0\t0.5\n1\tx\t0.5\n")


def test_bad_line_in_a_late_block_is_found_from_that_block():
    lines = ["1\t1\t1\n"] * 20000
    lines[17345] = "1\t1\t1e39\n"
    with pytest.raises(DataError, match=r"^x.tsv:17346: value '1e39' overflows float32$"):
        parse("".join(lines), block_size=4096)


def test_empty_file_is_an_error():
    with pytest.raises(DataError, match="empty"):
        parse("")


def test_categories_round_trip_and_errors():
    def read(text, n=None):
        return read_categories(lambda: io.BytesIO(text.encode()), "truth.tsv", n)

    assert read("3\n1\n7\n").tolist() == [0, 2, 6]
    assert read("").tolist() == []
    with pytest.raises(DataError, match=r"truth.tsv:2: row index 9 outside 1..8"):
        read("1\n9\n", 8)
    with pytest.raises(DataError, match=r"truth.tsv:2: 'x' is not a row index"):
        read("1\nx\n")
    with pytest.raises(DataError, match=r"^truth.tsv:4: row index 4 appears twice \(also on line 2\)$"):
        read("7\n4\n5\n4\n7\n")
    with pytest.raises(DataError, match=r"^truth.tsv:3: row index 3 appears twice"):
        read("3\n1\n3\n", 2 + 1)


@pytest.mark.parametrize("field", ["2_87", "+5", "-5", "５", "٣", "1.0", "0x10", "1e3"])
def test_categories_take_plain_digits_only(field):
    # int() accepts '2_87' (as 287), '+5' and non-ASCII digits: a truth file holds none of them.
    with pytest.raises(DataError, match=rf"^truth.tsv:2: '{re.escape(field)}' is not a row index$"):
        read_categories(lambda: io.BytesIO(f"1\n{field}\n".encode()), "truth.tsv", 1000)


def test_categories_long_line_is_bounded():
    with pytest.raises(DataError, match=r"^truth.tsv:2: line longer than 256 bytes: '1111") as err:
        read_categories(lambda: io.BytesIO(b"1\n" + b"1" * 10_000_000 + b"\n"), "truth.tsv")
    assert len(str(err.value)) < 200


def test_gzip_stream(tmp_path):
    path = tmp_path / "a.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("1\t1\t1\n2\t2\t1\n")
    blocks = list(iter_triples(lambda: gzip.open(path, "rb"), str(path), 2, 2))
    assert sum(len(b.rows) for b in blocks) == 2
