"""Write a network and its inputs in each peer's own input format.

Both formats come from the same matrices: W_k (N x N CSR, W(i, j) an edge from neuron i to
neuron j, as in the official TSV `i<TAB>j<TAB>value`), the inputs Y_0 (rows = inputs) and
the truth (0-based rows with any nonzero after the last layer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp

_TSV = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")


def coo_one_based(m: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, value) of a sparse matrix, 1-based, in row-major order (the official files' order)."""
    csr = sp.csr_matrix(m)
    csr.sort_indices()
    rows = np.repeat(np.arange(1, csr.shape[0] + 1, dtype=np.int32), np.diff(csr.indptr))
    return rows, csr.indices.astype(np.int32) + 1, csr.data


def tsv_bytes(m: sp.spmatrix, value: np.generic) -> bytes:
    """`row<TAB>col<TAB>value` lines, 1-based; every value written as `value` (its dtype sets the text:
    float32 0.0625 -> "0.0625", int8 1 -> "1")."""
    rows, cols, _ = coo_one_based(m)
    table = pa.table({"row": rows, "col": cols, "value": np.full(rows.size, value)})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=_TSV)
    return sink.getvalue().to_pybytes()


def truth_text(truth: np.ndarray) -> str:
    """The categories file: 1-based row indices, ascending, one per line."""
    return "".join(f"{int(i) + 1}\n" for i in np.sort(np.asarray(truth)))


def _uniform_value(m: sp.spmatrix) -> np.float32:
    data = sp.csr_matrix(m).data
    if data.size and not np.all(data == data[0]):
        raise ValueError("the TSV writer writes one value per matrix; this one has several")
    return np.float32(data[0] if data.size else 0.0)


# ----------------------------------------------------------------------------- Hidayetoglu 2020


def hidayetoglu_layer_bytes(w: sp.spmatrix) -> bytes:
    """One layer of neuron{N}.bin: int32 row[32N], int32 col[32N], float32 val[32N], where `row` is
    the TSV's second column (output neuron j) and `col` its first (input i): its converter
    reads `col row val`, and its CSR rows are the output neurons."""
    i, j, v = coo_one_based(w)
    return j.astype("<i4").tobytes() + i.astype("<i4").tobytes() + v.astype("<f4").tobytes()


def hidayetoglu_inputs_bytes(y0: sp.spmatrix) -> bytes:
    """sparse-images-{N}.bin: int32 row[nnz] (the TSV's neuron column), int32 col[nnz] (the
    TSV's input row), float32 val[nnz]; all 1-based like the TSV."""
    r, c, v = coo_one_based(y0)
    return c.astype("<i4").tobytes() + r.astype("<i4").tobytes() + v.astype("<f4").tobytes()


def write_hidayetoglu(
    folder: Path, layers: Iterable[sp.spmatrix], inputs: sp.spmatrix, truth: np.ndarray, neurons: int, layer_count: int
) -> dict[str, str]:
    """DATASET folder of the 2020 champion's singlegpu code; returns the environment it reads
    (besides DATASET, OMP_NUM_THREADS and its tuning BLOCKSIZE/BUFFER)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(folder / f"neuron{neurons}.bin", "wb") as out:
        for w in layers:
            out.write(hidayetoglu_layer_bytes(w))
            written += 1
    if written < layer_count:
        raise ValueError(f"{written} layers written, {layer_count} needed")
    (folder / f"sparse-images-{neurons}.bin").write_bytes(hidayetoglu_inputs_bytes(inputs))
    (folder / f"neuron{neurons}-l{layer_count}-categories.tsv").write_text(truth_text(truth))
    return {
        "NEURON": str(neurons),
        "LAYER": str(layer_count),
        "BATCH": str(inputs.shape[0]),
        "INPUT": str(sp.csr_matrix(inputs).nnz),
    }


def read_hidayetoglu_layer(data: bytes, neurons: int) -> sp.csr_matrix:
    """Inverse of hidayetoglu_layer_bytes (tests): the layer back as W (input i x output j)."""
    nnz = 32 * neurons
    arr = np.frombuffer(data, dtype="<i4", count=2 * nnz)
    j, i = arr[:nnz] - 1, arr[nnz:] - 1
    v = np.frombuffer(data, dtype="<f4", offset=8 * nnz, count=nnz)
    return sp.csr_matrix((v, (i, j)), shape=(neurons, neurons))


# ----------------------------------------------------------------------------- SNICIT's SDGC driver


def sdgc_paths(root: Path, neurons: int, layer_count: int) -> dict[str, Path]:
    """Where IDEA-CUHK's SDGC driver looks, relative to its working folder root/bin:
    ../dataset/SDGC/{tsv_weights/neuron{N}, MNIST/...}; ../scheduled_bm is XY/SNICIT's cache."""
    data = root / "dataset" / "SDGC"
    return {
        "cwd": root / "bin",
        "weights": data / "tsv_weights" / f"neuron{neurons}",
        "inputs": data / "MNIST" / f"sparse-images-{neurons}.tsv",
        "truth": data / "MNIST" / f"neuron{neurons}-l{layer_count}-categories.tsv",
        "schedule": root / "scheduled_bm",
    }


def write_sdgc(
    root: Path, layers: Iterable[sp.spmatrix], inputs: sp.spmatrix, truth: np.ndarray, neurons: int, layer_count: int
) -> dict[str, Path]:
    """The SDGC driver's folder tree for one network: one TSV per layer (n{N}-l{k}.tsv), the
    inputs TSV (not gzipped), the truth. XY and SNICIT cache their schedule of the layers in
    ../scheduled_bm/neuron{N}, keyed by N alone, so every network gets its own root."""
    paths = sdgc_paths(root, neurons, layer_count)
    for key in ("cwd", "weights", "schedule"):
        paths[key].mkdir(parents=True, exist_ok=True)
    paths["inputs"].parent.mkdir(parents=True, exist_ok=True)
    written = 0
    for k, w in enumerate(layers, start=1):
        (paths["weights"] / f"n{neurons}-l{k}.tsv").write_bytes(tsv_bytes(w, _uniform_value(w)))
        written = k
    if written < layer_count:
        raise ValueError(f"{written} layers written, {layer_count} needed")
    if _uniform_value(inputs) != 1:
        raise ValueError("the challenge's inputs are 0/1; these are not")
    paths["inputs"].write_bytes(tsv_bytes(inputs, np.int8(1)))
    paths["truth"].write_text(truth_text(truth))
    return paths


# ----------------------------------------------------------------------------- files kept between runs

FILES_MARK = "spdnn-files.json"  # written last: the folder holds one network's complete files


def mark_files(folder: Path, digest: str | None, files: dict) -> None:
    """Say that folder's files are complete and of the data with this digest."""
    record = {"digest": digest, "files": {k: v for k, v in files.items() if k != "write_seconds"}}
    (Path(folder) / FILES_MARK).write_text(json.dumps(record, default=str))


def kept_files(folder: Path, digest: str | None) -> dict | None:
    """What write_hidayetoglu / write_sdgc returned for the files an earlier run left in folder
    (bench_peers --keep-files), if they are complete and of the same data (digest); else None.
    65536 x 1920's files take minutes to write and the champion minutes to read: more than one
    device call holds."""
    mark = Path(folder) / FILES_MARK
    if digest is None or not mark.is_file():
        return None
    record = json.loads(mark.read_text())
    if record.get("digest") != digest:
        return None
    files = record["files"]
    if "env" in files:  # write_hidayetoglu's: the folder and the environment it reads
        return {"folder": Path(files["folder"]), "env": files["env"]}
    return {k: Path(v) for k, v in files.items()}  # write_sdgc's paths
