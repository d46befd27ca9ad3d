"""The binary cache: Arrow IPC files holding weights and inputs, memory-mapped on load.

Weights of one network size N live in one file, one record batch per layer, each batch
the CSR arrays of W_k without its row pointer: every row has exactly 32 nonzeros, so
row i owns entries 32*i .. 32*i+31 (columns ascending) and the pointer is implicit.
Inputs live in one file of (row, col, value) triples sorted by row. Both carry the
network's metadata (N, layers, bias, source, checksums) in the Arrow schema metadata.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from tqdm import tqdm

from .. import challenge
from .atomic import atomic_path, write_text
from .errors import DataError
from .tsv import iter_triples

FORMAT_VERSION = "1"
WEIGHTS_SCHEMA = pa.schema([("col", pa.int32()), ("value", pa.float32())])
INPUTS_SCHEMA = pa.schema([("row", pa.int32()), ("col", pa.int32()), ("value", pa.float32())])


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar holding a cache file's content sha256 and size, written after the file itself."""
    return Path(f"{path}.sha256")


@contextlib.contextmanager
def _cache_output(output: str | os.PathLike) -> Iterator[Path]:
    """Write a cache file atomically, then its checksum sidecar.

    A file without a matching sidecar (a run killed between the two renames, a damaged disk)
    is not trusted: `cache_problem` reports it and the workflow rebuilds it.
    """
    sidecar = checksum_path(output)
    sidecar.unlink(missing_ok=True)
    with atomic_path(output) as tmp:
        yield tmp
        digest, size = sha256_file(tmp), tmp.stat().st_size
    write_text(sidecar, json.dumps({"sha256": digest, "size": size}) + "\n")


def cache_problem(path: str | os.PathLike, full: bool = True) -> str | None:
    """Why a cache file cannot be trusted, or None: missing sidecar, size or sha256 differing
    from it, or an unreadable Arrow file. Without `full`, the sha256 is checked only when the
    file was modified after its checksum file was written (a cheap check before every run;
    Snakemake touches both outputs of a job in order, which keeps the file the older one)."""
    path = Path(path)
    sidecar = checksum_path(path)
    if not path.exists():
        return "missing"
    if not sidecar.exists():
        return "no checksum file beside it (an interrupted write?)"
    try:
        expected = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"unreadable checksum file {sidecar.name}"
    if path.stat().st_size != expected.get("size"):
        return f"size {path.stat().st_size} differs from the recorded {expected.get('size')}"
    try:
        read_metadata(path)
    except (OSError, pa.ArrowInvalid, DataError) as err:
        return f"unreadable: {err}"
    if full or path.stat().st_mtime_ns > sidecar.stat().st_mtime_ns:
        actual = sha256_file(path)
        if actual != expected.get("sha256"):
            return f"content sha256 {actual[:16]}... differs from the recorded {str(expected.get('sha256'))[:16]}..."
    return None


def verify_cache(path: str | os.PathLike, full: bool = True) -> None:
    """Raise DataError if the cache file is damaged, after removing its checksum file: a file
    without one is never trusted again, and the workflow's next run rebuilds it."""
    problem = cache_problem(path, full)
    if problem is not None:
        checksum_path(path).unlink(missing_ok=True)
        raise DataError(str(path), None, f"damaged cache file ({problem}); removed its checksum file: "
                                         "re-run to rebuild it")


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


def layer_to_csr_arrays(block_rows: np.ndarray, block_cols: np.ndarray, values: np.ndarray,
                        first_lines: np.ndarray, neurons: int, name: str) -> tuple[np.ndarray, np.ndarray]:
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
    dup = np.flatnonzero((np.diff(rows) == 0) & (np.diff(cols) == 0))
    if dup.size:
        i = order[dup[0] + 1]
        raise DataError(name, int(first_lines[i]), f"entry ({rows[dup[0]]}, {cols[dup[0]]}) appears twice")
    return (cols - 1).astype(np.int32), values[order].astype(np.float32)


def _read_layer(open_text, name: str, neurons: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols, vals, lines = [], [], [], []
    for block in iter_triples(open_text, name, neurons, neurons):
        rows.append(block.rows)
        cols.append(block.cols)
        vals.append(block.values)
        lines.append(np.arange(block.first_line, block.first_line + len(block.rows)))
    return layer_to_csr_arrays(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                               np.concatenate(lines), neurons, name)


def convert_weights(archive: str | os.PathLike, output: str | os.PathLike, neurons: int, layers: int,
                    source: str = "", progress: bool = True) -> None:
    """Convert the first `layers` layers of a weights tarball into one Arrow IPC file.

    The tarball is read as a stream (never unpacked to disk); layers that arrive out of
    order are parked in a temporary folder until their turn. The output appears only
    when complete.
    """
    challenge.check_neurons(neurons)
    archive = Path(archive)
    wanted = {challenge.layer_member(neurons, k): k for k in range(1, layers + 1)}
    meta = _metadata(kind="weights", neurons=neurons, layers=layers, bias=challenge.bias(neurons),
                     source=source, source_file=archive.name, source_sha256=sha256_file(archive))
    schema = WEIGHTS_SCHEMA.with_metadata(meta)
    with _cache_output(output) as tmp, tempfile.TemporaryDirectory(dir=Path(output).parent) as park:
        next_layer = 1
        parked: set[int] = set()
        bar = tqdm(total=layers, desc=f"convert neuron{neurons} layers", unit="layer", disable=not progress)
        try:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                def write(cols: np.ndarray, vals: np.ndarray) -> None:
                    writer.write_batch(pa.record_batch([pa.array(cols), pa.array(vals)], schema=schema))
                    bar.update(1)

                for member_name, open_text in _stream_members(archive, wanted):
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
                    if next_layer > layers:
                        break
        except tarfile.TarError as err:
            raise DataError(str(archive), None, f"damaged tar archive: {err}") from err
        except (EOFError, gzip.BadGzipFile, OSError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(str(archive), None, f"damaged or truncated archive: {err}") from err
        finally:
            bar.close()
        if next_layer <= layers:
            raise DataError(str(archive), None,
                            f"holds only layers 1..{next_layer - 1} in order; layer {next_layer} of {layers} is missing")


def _stream_members(archive: Path, wanted: dict[str, int]):
    """Yield (name, opener) for wanted members of a tarball, read strictly as a stream.

    The opener returns the member's bytes from memory (a layer's TSV is tens of MB at most),
    so both the fast parse and the diagnostic re-scan can read it.
    """
    import io

    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            if member.name not in wanted or not member.isfile():
                continue
            handle = tar.extractfile(member)
            data = handle.read()
            yield member.name, (lambda data=data: io.BytesIO(data))


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
    def from_matrices(cls, matrices: list[sp.spmatrix], bias: float | None = None, **metadata) -> "Weights":
        """In-memory weights from N x N sparse matrices with 32 nonzeros per row (tests, benchmarks)."""
        batches = [pa.record_batch(list(csr_layer_arrays(m)), schema=WEIGHTS_SCHEMA) for m in matrices]
        n = matrices[0].shape[0]
        b = challenge.bias(n) if bias is None else bias
        return cls(neurons=n, bias=b, metadata={"neurons": n, "layers": len(matrices), "bias": b, **metadata},
                   _batches=batches)


def csr_layer_arrays(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(cols int32, values float32) of a weight matrix in the cache's row-major layout, checked for 32 per row."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    m.sort_indices()
    counts = np.diff(m.indptr)
    if m.shape[0] != m.shape[1] or np.any(counts != challenge.NNZ_PER_ROW):
        raise ValueError(f"weight matrix must be square with {challenge.NNZ_PER_ROW} nonzeros per row")
    return m.indices.astype(np.int32), m.data.astype(np.float32)


def write_weights(output: str | os.PathLike, matrices, neurons: int, layers: int, source: str = "",
                  **metadata) -> None:
    """Write weight matrices (any iterable of N x N sparse matrices) straight into a cache file."""
    meta = _metadata(kind="weights", neurons=neurons, layers=layers, bias=challenge.bias(neurons),
                     source=source, **metadata)
    schema = WEIGHTS_SCHEMA.with_metadata(meta)
    written = 0
    with _cache_output(output) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for m in matrices:
                writer.write_batch(pa.record_batch(list(csr_layer_arrays(m)), schema=schema))
                written += 1
        if written != layers:
            raise ValueError(f"{written} matrices written, {layers} declared")


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


def convert_inputs(tsv_gz: str | os.PathLike, output: str | os.PathLike, neurons: int,
                   n_inputs: int | None = None, source: str = "", progress: bool = True) -> None:
    """Convert a gzipped input TSV into an Arrow IPC file of 0-based (row, col, value) triples.

    With `n_inputs`, rows beyond it are an error and n_inputs rows are recorded; without it,
    the number of rows is the largest row index found. Rows with no entry are all-zero inputs.
    """
    tsv_gz = Path(tsv_gz)
    name = str(tsv_gz)

    raw_files = []  # the compressed files under the gzip streams: their position is the progress

    def open_text():
        raw_files.append(open(tsv_gz, "rb"))
        return gzip.GzipFile(fileobj=raw_files[-1], mode="rb")

    rows, cols, vals = [], [], []
    try:
        with tqdm(total=tsv_gz.stat().st_size, desc=f"convert {tsv_gz.name}", unit="B", unit_scale=True,
                  disable=not progress) as bar:
            for block in iter_triples(open_text, name, n_inputs or np.iinfo(np.int32).max, neurons):
                rows.append((block.rows - 1).astype(np.int32))
                cols.append((block.cols - 1).astype(np.int32))
                vals.append(block.values)
                bar.update(raw_files[-1].tell() - bar.n)
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(name, None, f"damaged or truncated gzip file: {err}") from err
    finally:
        for raw in raw_files:
            raw.close()
    row = np.concatenate(rows)
    if n_inputs is None:
        n_inputs = int(row.max()) + 1
    col = np.concatenate(cols)
    val = np.concatenate(vals)
    order = np.lexsort((col, row))
    row, col, val = row[order], col[order], val[order]
    dup = np.flatnonzero((np.diff(row) == 0) & (np.diff(col) == 0))
    if dup.size:
        raise DataError(name, None, f"entry ({row[dup[0]] + 1}, {col[dup[0]] + 1}) appears twice")
    meta = _metadata(kind="inputs", neurons=neurons, rows=n_inputs, nnz=int(len(row)), source=source,
                     source_file=tsv_gz.name, source_sha256=sha256_file(tsv_gz))
    table = pa.table([row, col, val], schema=INPUTS_SCHEMA.with_metadata(meta))
    with _cache_output(output) as tmp:
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
