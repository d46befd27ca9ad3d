"""The binary cache: Arrow IPC files holding weights and inputs, memory-mapped on load.

Weights of one network size N live in one file, one record batch per layer, each batch
the CSR arrays of W_k without its row pointer: every row has exactly 32 nonzeros, so
row i owns entries 32*i .. 32*i+31 (columns ascending) and the pointer is implicit.
Inputs live in one file of (row, col, value) triples sorted by row. Both carry the
network's metadata (N, layers, bias, source, checksums) in the Arrow schema metadata.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from .. import challenge
from ..progress import progress as progress_bar
from .atomic import remove_stale, temporary_name
from .checksum import checksum_path as checksum_path  # re-exported: stale.py and tests name it here
from .checksum import checksum_problem, checksummed_output, sha256_file, verify_checksum
from .errors import DataError
from .tsv import MAX_LINE_BYTES, iter_triples

FORMAT_VERSION = "1"
WEIGHTS_SCHEMA = pa.schema([("col", pa.int32()), ("value", pa.float32())])
INPUTS_SCHEMA = pa.schema([("row", pa.int32()), ("col", pa.int32()), ("value", pa.float32())])
# What may follow a tar's end-of-archive blocks: padding to a record (10 KiB for GNU tar)
TAR_TRAILER_BYTES = 16 << 20


def layer_max_bytes(neurons: int) -> int:
    """The most a legal layer TSV can hold: 32 x N lines of at most MAX_LINE_BYTES plus a newline."""
    return challenge.NNZ_PER_ROW * neurons * (MAX_LINE_BYTES + 1)


def inputs_max_bytes(rows: int, neurons: int) -> int:
    """The most a legal inputs TSV can hold: every entry of a rows x N matrix once, in bounded lines."""
    return rows * neurons * (MAX_LINE_BYTES + 1)


def _zlib_problem(err: zlib.error) -> str:
    text = str(err)
    if "incorrect data check" in text:
        return "gzip CRC check failed: the data do not match the CRC-32 stored in the file (damaged)"
    if "incorrect length check" in text:
        return "gzip length check failed: the data do not match the length stored in the file (damaged)"
    if "incorrect header check" in text or "unknown compression method" in text:
        return "not gzip data"
    return f"damaged gzip data ({text})"


class GzipStream(io.RawIOBase):
    """The decompressed bytes of a gzip file, checked as they come.

    zlib verifies each member's CRC-32 and length at its end (tarfile's own gzip reader
    never does: a flipped bit went unnoticed), so a consumer that reads to the end has
    checked the whole file. One call decompresses at most max(size, 1 MiB) bytes, so a
    decompression bomb costs no memory. gzip.GzipFile checks the same in 8 KiB steps,
    which is slower here. Problems are DataError naming the file.
    """

    _IN = 1 << 18  # compressed bytes read at a time
    _OUT = 1 << 20  # decompressed bytes made per call at least: few calls, bounded memory

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        super().__init__()
        self.name = name or str(path)
        self._raw = open(path, "rb")
        self._input = b""  # compressed bytes read, not yet decompressed
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper: header, CRC and length checked
        self._buffer, self._pos = b"", 0  # decompressed bytes made, not yet returned

    def readable(self) -> bool:
        return True

    def compressed_position(self) -> int:
        """Compressed bytes read so far (for progress bars)."""
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._OUT), b""))
        parts, want = [], size
        while want > 0:
            if self._pos >= len(self._buffer):
                self._buffer, self._pos = self._inflate_some(max(want, self._OUT)), 0
                if not self._buffer:
                    break
            piece = self._buffer[self._pos : self._pos + want]
            self._pos += len(piece)
            want -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _inflate_some(self, limit: int) -> bytes:
        """Up to `limit` decompressed bytes; b"" only at the end of the file."""
        while True:
            if self._inflate.eof and not self._next_member():
                return b""
            if not self._input:
                self._input = self._raw.read(self._IN)
                if not self._input:
                    what = "is empty" if self._raw.tell() == 0 else "is truncated: it ends inside the compressed data"
                    raise DataError(self.name, None, f"gzip file {what}")
            try:
                out = self._inflate.decompress(self._input, limit)
            except zlib.error as err:
                raise DataError(self.name, None, _zlib_problem(err)) from None
            self._input = self._inflate.unconsumed_tail or self._inflate.unused_data
            if out:
                return out

    def _next_member(self) -> bool:
        """After a member's end: start the next one, past zero padding; False at the end of the file."""
        rest = self._input.lstrip(b"\x00")
        while not rest:
            chunk = self._raw.read(self._IN)
            if not chunk:
                self._input = b""
                return False
            rest = chunk.lstrip(b"\x00")
        self._input = rest
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()


def _arrow_problem(path: Path) -> str | None:
    """Why a cache file is not a readable spdnn Arrow file, or None (the probe of `cache_problem`)."""
    try:
        read_metadata(path)
    except (OSError, pa.ArrowInvalid, DataError) as err:
        return f"unreadable: {err}"
    return None


def cache_problem(path: str | os.PathLike, full: bool = True) -> str | None:
    """Why a cache file cannot be trusted, or None: `checksum.checksum_problem` (missing sidecar,
    size or sha256 differing from it) or an unreadable Arrow file. Without `full`, the sha256 is
    checked only when the file was modified after its checksum file was written."""
    return checksum_problem(path, full, probe=_arrow_problem)


def verify_cache(path: str | os.PathLike, full: bool = True) -> None:
    """Raise DataError if the cache file is damaged, after removing its checksum file: a file
    without one is never trusted again, and the workflow's next run rebuilds it."""
    verify_checksum(path, full, probe=_arrow_problem)


def _metadata(**items: object) -> dict[bytes, bytes]:
    return {b"spdnn": json.dumps({"format": FORMAT_VERSION, **items}, sort_keys=True).encode()}


def read_metadata(path: str | os.PathLike) -> dict:
    """The spdnn metadata stored in a cache file's schema."""
    with pa.memory_map(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
    raw = (schema.metadata or {}).get(b"spdnn")
    if raw is None:
        raise DataError(str(path), None, "not an spdnn cache file (no metadata)")
    return json.loads(raw)


# ----------------------------------------------------------------------------- weights


def layer_to_csr_arrays(
    block_rows: np.ndarray, block_cols: np.ndarray, values: np.ndarray, first_lines: np.ndarray, neurons: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sort one layer's 1-based triples by (row, col) and check 32 nonzeros per row, no duplicates.

    Returns 0-based column indices (int32) and values (float32) in row-major order.
    """
    expected = challenge.NNZ_PER_ROW
    counts = np.bincount(block_rows - 1, minlength=neurons)
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        row = int(bad[0]) + 1
        hits = np.flatnonzero(block_rows == row)
        line = int(first_lines[hits[0]]) if hits.size else None
        raise DataError(name, line, f"row {row} has {counts[row - 1]} nonzeros, expected {expected}")
    order = np.lexsort((block_cols, block_rows))
    rows, cols = block_rows[order], block_cols[order]
    repeat = _first_repeat(rows, cols, order)
    if repeat is not None:
        k, later, earlier = repeat
        raise DataError(
            name,
            int(first_lines[later]),
            f"entry ({rows[k]}, {cols[k]}) appears twice (also on line {int(first_lines[earlier])})",
        )
    return (cols - 1).astype(np.int32), values[order].astype(np.float32)


def _first_repeat(rows: np.ndarray, cols: np.ndarray, order: np.ndarray) -> tuple[int, int, int] | None:
    """The first entry in file order that repeats an earlier one, for entries sorted by a stable
    lexsort (`order`): (k, its index, the earlier one's index), the pair at sorted k and k + 1; or None."""
    dup = np.flatnonzero((np.diff(rows) == 0) & (np.diff(cols) == 0))
    if not dup.size:
        return None
    k = int(dup[np.argmin(order[dup + 1])])
    return k, int(order[k + 1]), int(order[k])


def _read_layer(open_text, name: str, neurons: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols, vals, lines = [], [], [], []
    for block in iter_triples(open_text, name, neurons, neurons):
        rows.append(block.rows)
        cols.append(block.cols)
        vals.append(block.values)
        lines.append(np.arange(block.first_line, block.first_line + len(block.rows)))
    return layer_to_csr_arrays(
        np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), np.concatenate(lines), neurons, name
    )


def convert_weights(
    archive: str | os.PathLike,
    output: str | os.PathLike,
    neurons: int,
    layers: int,
    source: str = "",
    progress: bool = True,
) -> None:
    """Convert the first `layers` layers of a weights tarball into one Arrow IPC file.

    The tarball is read as a stream (never unpacked to disk); layers that arrive out of
    order are parked in a temporary folder until their turn. The output appears only
    when complete.
    """
    challenge.check_neurons(neurons)
    archive = Path(archive)
    wanted = {challenge.layer_member(neurons, k): k for k in range(1, layers + 1)}
    meta = _metadata(
        kind="weights",
        neurons=neurons,
        layers=layers,
        bias=challenge.bias(neurons),
        source=source,
        source_file=archive.name,
        source_sha256=sha256_file(archive),
    )
    schema = WEIGHTS_SCHEMA.with_metadata(meta)
    with checksummed_output(output) as tmp, _park_folder(Path(output)) as park:
        next_layer = 1
        parked: set[int] = set()
        bar = progress_bar(total=layers, desc=f"convert neuron{neurons} layers", unit="layer", disable=not progress)
        try:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:

                def write(cols: np.ndarray, vals: np.ndarray) -> None:
                    writer.write_batch(pa.record_batch([pa.array(cols), pa.array(vals)], schema=schema))
                    bar.update(1)

                # No early exit once all layers are in: the rest is read too, so that the gzip
                # CRC (which covers the whole file) and duplicated members are checked.
                for member_name, open_text in _stream_members(archive, wanted, layer_max_bytes(neurons)):
                    k = wanted[member_name]
                    cols, vals = _read_layer(open_text, f"{archive}!{member_name}", neurons)
                    if k != next_layer:
                        np.savez(Path(park) / f"{k}.npz", cols=cols, vals=vals)
                        parked.add(k)
                        continue
                    write(cols, vals)
                    next_layer += 1
                    while next_layer in parked:
                        with np.load(Path(park) / f"{next_layer}.npz") as stored:
                            write(stored["cols"], stored["vals"])
                        parked.discard(next_layer)
                        next_layer += 1
        except tarfile.TarError as err:
            raise DataError(str(archive), None, f"damaged tar archive: {err}") from err
        except EOFError as err:
            raise DataError(str(archive), None, f"truncated archive: {err}") from err
        finally:
            bar.close()
        if next_layer <= layers:
            raise DataError(
                str(archive),
                None,
                f"holds only layers 1..{next_layer - 1} in order; layer {next_layer} of {layers} is missing",
            )


@contextlib.contextmanager
def _park_folder(output: Path) -> Iterator[Path]:
    """A scratch folder beside `output` for layers that arrive early. Its name carries host and
    pid, so the next conversion removes it if this one was killed (SIGKILL skips the cleanup)."""
    stem = f"{output.name}.park"
    remove_stale(output.parent, stem)
    folder = output.parent / temporary_name(stem)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stream_members(archive: Path, wanted: dict[str, int], max_member_bytes: int | None = None):
    """Yield (name, opener) for the wanted members of a tarball, read strictly as a stream.

    The opener returns the member's bytes from memory, so both the fast parse and the
    diagnostic re-scan can read it; a member larger than `max_member_bytes` (default: the
    largest legal layer of the official sizes) is an error before any of it is read. The
    whole archive is read, to its gzip trailer (CRC-32 and length checked); a member name
    that appears twice is an error, whichever copy would have been used.
    """
    limit = layer_max_bytes(max(challenge.NEURONS)) if max_member_bytes is None else max_member_bytes
    name = str(archive)
    seen: set[str] = set()
    with GzipStream(archive, name) as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key = posixpath.normpath(member.name)
                if key in seen:
                    raise DataError(f"{name}!{member.name}", None, "member appears twice in the archive")
                seen.add(key)
                if member.name not in wanted:
                    continue
                if member.size > limit:
                    raise DataError(
                        f"{name}!{member.name}",
                        None,
                        f"member of {member.size} bytes is larger than the {limit} bytes a legal "
                        f"layer can hold (32 x N lines of at most {MAX_LINE_BYTES} bytes)",
                    )
                data = tar.extractfile(member).read()  # type: ignore[union-attr]  # a regular file: exactly member.size bytes
                yield member.name, (lambda data=data: io.BytesIO(data))
        _drain(gz, name)


def _drain(gz: GzipStream, name: str) -> None:
    """Read what follows the tar's end-of-archive blocks to the end of the gzip stream (tarfile
    stops before it), so that the gzip trailer is checked; a few records at most are legal."""
    left = TAR_TRAILER_BYTES
    while piece := gz.read(min(1 << 20, left + 1)):
        left -= len(piece)
        if left < 0:
            raise DataError(name, None, f"more than {TAR_TRAILER_BYTES} bytes after the end of the tar archive")


@dataclass
class Weights:
    """The weight matrices of one network, memory-mapped from the cache."""

    neurons: int
    bias: float
    metadata: dict
    _batches: list = field(repr=False)

    @property
    def n_layers(self) -> int:
        return len(self._batches)

    def layer_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """0-based layer k: (col int32[32N], value float32[32N]), row i owning entries 32i..32i+31."""
        batch = self._batches[k]
        return batch.column(0).to_numpy(), batch.column(1).to_numpy()

    def layer(self, k: int) -> sp.csr_matrix:
        """0-based layer k as an N x N scipy CSR matrix (zero-copy on the mapped arrays)."""
        cols, vals = self.layer_arrays(k)
        indptr = np.arange(0, len(cols) + 1, challenge.NNZ_PER_ROW, dtype=np.int32)
        return sp.csr_matrix((vals, cols, indptr), shape=(self.neurons, self.neurons))

    def layers(self, count: int | None = None) -> Iterator[sp.csr_matrix]:
        for k in range(self.n_layers if count is None else count):
            yield self.layer(k)

    @classmethod
    def from_matrices(cls, matrices: list[sp.spmatrix], bias: float | None = None, **metadata) -> Weights:
        """In-memory weights from N x N sparse matrices with 32 nonzeros per row (tests, benchmarks)."""
        batches = [pa.record_batch(list(csr_layer_arrays(m)), schema=WEIGHTS_SCHEMA) for m in matrices]
        n = matrices[0].shape[0]
        b = challenge.bias(n) if bias is None else bias
        return cls(
            neurons=n, bias=b, metadata={"neurons": n, "layers": len(matrices), "bias": b, **metadata}, _batches=batches
        )


def csr_layer_arrays(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(cols int32, values float32) of a weight matrix in the cache's row-major layout, checked for 32 per row."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    m.sort_indices()
    counts = np.diff(m.indptr)
    if m.shape[0] != m.shape[1] or np.any(counts != challenge.NNZ_PER_ROW):
        raise ValueError(f"weight matrix must be square with {challenge.NNZ_PER_ROW} nonzeros per row")
    return m.indices.astype(np.int32), m.data.astype(np.float32)


def load_weights(path: str | os.PathLike, layers: int | None = None) -> Weights:
    """Memory-map a weights cache file; `layers` (if given) must not exceed what it holds."""
    meta = read_metadata(path)
    if meta.get("kind") != "weights" or meta.get("format") != FORMAT_VERSION:
        raise DataError(str(path), None, f"not a weights cache of format {FORMAT_VERSION}: {meta}")
    reader = pa.ipc.open_file(pa.memory_map(str(path)))
    count = reader.num_record_batches
    if count != meta["layers"]:
        raise DataError(str(path), None, f"holds {count} layers, metadata says {meta['layers']}")
    if layers is not None and layers > count:
        raise DataError(str(path), None, f"holds {count} layers, {layers} requested")
    n = meta["neurons"]
    batches = [reader.get_batch(k) for k in range(count if layers is None else layers)]
    for k, batch in enumerate(batches):
        if batch.num_rows != challenge.NNZ_PER_ROW * n:
            raise DataError(str(path), None, f"layer {k + 1} has {batch.num_rows} entries, expected {32 * n}")
    return Weights(neurons=n, bias=float(meta["bias"]), metadata=meta, _batches=batches)


# ----------------------------------------------------------------------------- inputs


def convert_inputs(
    tsv_gz: str | os.PathLike,
    output: str | os.PathLike,
    neurons: int,
    n_inputs: int | None = None,
    source: str = "",
    progress: bool = True,
) -> None:
    """Convert a gzipped input TSV into an Arrow IPC file of 0-based (row, col, value) triples.

    Rows beyond `n_inputs` (default: the challenge's 60000) are an error, as are more entries
    or bytes than such a matrix can hold and an entry given twice. With `n_inputs`, n_inputs
    rows are recorded; without it, the largest row index found. Rows with no entry are
    all-zero inputs. The whole gzip file is read, so its CRC is checked.
    """
    tsv_gz = Path(tsv_gz)
    name = str(tsv_gz)
    max_rows = n_inputs or challenge.N_INPUTS
    max_entries = max_rows * neurons
    streams: list[GzipStream] = []  # the last one's compressed position is the progress

    def open_text() -> GzipStream:
        streams.append(GzipStream(tsv_gz, name))
        return streams[-1]

    rows, cols, vals = [], [], []
    count = 0
    try:
        with progress_bar(
            total=tsv_gz.stat().st_size, desc=f"convert {tsv_gz.name}", unit="B", unit_scale=True, disable=not progress
        ) as bar:
            for block in iter_triples(
                open_text,  # type: ignore[arg-type]  # a GzipStream reads as IO[bytes]
                name,
                max_rows,
                neurons,
                max_bytes=inputs_max_bytes(max_rows, neurons),
            ):
                count += len(block.rows)
                if count > max_entries:  # memory stays bounded by what a legal file needs
                    raise DataError(
                        name,
                        max_entries + 1,
                        f"more entries than a {max_rows} x {neurons} matrix holds: some must repeat",
                    )
                rows.append((block.rows - 1).astype(np.int32))
                cols.append((block.cols - 1).astype(np.int32))
                vals.append(block.values)
                bar.update(streams[-1].compressed_position() - bar.n)
    finally:
        for stream in streams:
            stream.close()
    row = np.concatenate(rows)
    if n_inputs is None:
        n_inputs = int(row.max()) + 1
    col = np.concatenate(cols)
    val = np.concatenate(vals)
    order = np.lexsort((col, row))
    row, col, val = row[order], col[order], val[order]
    repeat = _first_repeat(row, col, order)
    if repeat is not None:  # entry i of the file is on line i + 1
        k, later, earlier = repeat
        raise DataError(
            name, later + 1, f"entry ({row[k] + 1}, {col[k] + 1}) appears twice (also on line {earlier + 1})"
        )
    meta = _metadata(
        kind="inputs",
        neurons=neurons,
        rows=n_inputs,
        nnz=int(len(row)),
        source=source,
        source_file=tsv_gz.name,
        source_sha256=sha256_file(tsv_gz),
    )
    table = pa.table([row, col, val], schema=INPUTS_SCHEMA.with_metadata(meta))
    with checksummed_output(output) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)  # one batch: columns map back as single zero-copy arrays


def load_inputs(path: str | os.PathLike, n_inputs: int | None = None) -> sp.csr_matrix:
    """Load the inputs cache as a float32 CSR matrix, keeping only the first `n_inputs` rows."""
    meta = read_metadata(path)
    if meta.get("kind") != "inputs" or meta.get("format") != FORMAT_VERSION:
        raise DataError(str(path), None, f"not an inputs cache of format {FORMAT_VERSION}: {meta}")
    rows_total = int(meta["rows"])
    if n_inputs is not None and n_inputs > rows_total:
        raise DataError(str(path), None, f"holds {rows_total} inputs, {n_inputs} requested")
    n = rows_total if n_inputs is None else n_inputs
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all().combine_chunks()
    row = table.column("row").to_numpy()
    end = int(np.searchsorted(row, n))
    row = row[:end]
    col = table.column("col").to_numpy()[:end]
    val = table.column("value").to_numpy()[:end]
    # rows are sorted: the row pointer is a binary search per row, not a pass over the entries
    indptr = np.searchsorted(row, np.arange(n + 1, dtype=np.int32))
    # int32 pointers when they fit, so scipy keeps the mapped int32 indices without a copy
    indptr = indptr.astype(np.int32 if len(row) < 2**31 else np.int64)
    return sp.csr_matrix((val, col, indptr), shape=(n, int(meta["neurons"])))
