"""Reader of SNICIT's trained sparse networks (IDEA-CUHK/SNICIT, MIT licence, dataset/beyond/networks).

Never committed here: exported from the pinned commit into the ignored folder
.peers/SNICIT/ (see docs/dag.md). Layout, as SNICIT's own BF/SNIG/SNICIT readers take it:

* tsv_weights/NAME/l{k}-{dense|sparse}.tsv and tsv_biases/NAME/l{k}-{dense|sparse}.tsv,
  k = 1 .. layers. A bias file has one value per line: one per neuron the layer computes.
* a dense weight file has one value per line, in_width x out_width of them, entry
  i * out_width + j the weight from neuron i to neuron j;
* a sparse weight file has `i<TAB>j<TAB>w` lines (0-based), an edge from neuron i to j.
* Hidden layers (the dense input layer and every sparse one) clip to [0, 1] (relu_clip1);
  the last (dense, 10 classes) is the identity and the argmax is the class.
Networks: A n128-l18-acc94.94, B n256-l18-acc96.88, C n256-l12-acc95.61 (MNIST: a dense
784 -> N first layer) and D n256-l12-acc75.86 (CIFAR-10: 256 features, no dense first layer).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp

from ..io.errors import DataError
from .layered import LayeredNetwork
from .network import IDENTITY, RELU_CLIP1

NETWORKS = {"A": "n128-l18-acc94.94", "B": "n256-l18-acc96.88", "C": "n256-l12-acc95.61", "D": "n256-l12-acc75.86"}
PINNED_COMMIT = "0ce20079674a3c6903c0d1bebedce07df8cbcc5c"
_LAYER_FILE = re.compile(r"^l(\d+)-(dense|sparse)\.tsv$")


def default_root() -> Path:
    """Where the exported networks are: $SPDNN_SNICIT, else <checkout>/.peers/SNICIT/dataset/beyond/networks."""
    env = os.environ.get("SPDNN_SNICIT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".peers" / "SNICIT" / "dataset" / "beyond" / "networks"


def _read_columns(path: Path, types: list[pa.DataType]) -> list[np.ndarray]:
    names = [f"c{i}" for i in range(len(types))]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(column_types=dict(zip(names, types))),
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(str(path), None, f"cannot read as {len(types)} tab-separated columns: {err}") from None
    cols = [table.column(n).to_numpy() for n in names]
    for c in cols:
        if c.dtype.kind == "f" and not np.all(np.isfinite(c)):
            bad = int(np.flatnonzero(~np.isfinite(c))[0])
            raise DataError(str(path), bad + 1, "value is not finite")
    return cols


def _layer_files(folder: Path) -> list[tuple[int, str]]:
    found = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        m = _LAYER_FILE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2)))
    found.sort()
    if not found:
        raise DataError(str(folder), None, "no l{k}-{dense|sparse}.tsv bias files")
    if [k for k, _ in found] != list(range(1, len(found) + 1)):
        raise DataError(str(folder), None, f"layer files are not l1 .. l{len(found)}: {[k for k, _ in found]}")
    return found


def _dense(path: Path, n_out: int) -> sp.csr_matrix:
    (values,) = _read_columns(path, [pa.float32()])
    if values.size % n_out:
        raise DataError(str(path), None, f"{values.size} weights are not a multiple of the {n_out} neurons")
    return sp.csr_matrix(values.reshape(-1, n_out))


def _sparse(path: Path, n_in: int, n_out: int) -> sp.csr_matrix:
    i, j, w = _read_columns(path, [pa.int64(), pa.int64(), pa.float32()])
    for label, idx, limit in (("row", i, n_in), ("column", j, n_out)):
        bad = np.flatnonzero((idx < 0) | (idx >= limit))
        if bad.size:
            raise DataError(str(path), int(bad[0]) + 1, f"{label} {idx[bad[0]]} outside 0 .. {limit - 1}")
    key = i * n_out + j
    if np.unique(key).size != key.size:
        order = np.argsort(key, kind="stable")
        d = int(np.flatnonzero(np.diff(key[order]) == 0)[0])
        raise DataError(
            str(path),
            int(order[d + 1]) + 1,
            f"duplicate weight {i[order[d]]} -> {j[order[d]]} (lines {order[d] + 1} and {order[d + 1] + 1})",
        )
    return sp.csr_matrix((w, (i, j)), shape=(n_in, n_out))


def read_snicit(name: str, root: Path | str | None = None, allow_missing_input_layer: bool = False) -> LayeredNetwork:
    """A SNICIT network by name (n128-l18-acc94.94 ...) or letter (A .. D) from `root` (default_root()).

    allow_missing_input_layer: when the dense first layer's weight file is absent (B and C: too
    large for the mirror), start the network at its first sparse layer (its inputs are then
    that layer's N neurons, values in [0, 1]); said in meta["input_layer"].
    """
    name = NETWORKS.get(name, name)
    root = Path(root) if root is not None else default_root()
    wdir, bdir = root / "tsv_weights" / name, root / "tsv_biases" / name
    layers = _layer_files(bdir)
    weights: list = []
    biases: list = []
    acts: list = []
    input_layer = "none"
    for pos, (k, kind) in enumerate(layers):
        fname = f"l{k}-{kind}.tsv"
        (bias,) = _read_columns(bdir / fname, [pa.float32()])
        wpath = wdir / fname
        if not wpath.is_file():
            if pos == 0 and kind == "dense" and allow_missing_input_layer:
                input_layer = "absent"
                continue
            raise DataError(str(wpath), None, "weight file missing (its bias file is there)")
        last = pos == len(layers) - 1
        if kind == "dense":
            w = _dense(wpath, bias.size)
            if pos == 0:
                input_layer = "dense"
        else:
            n_in = weights[-1].shape[1] if weights else bias.size  # a first sparse layer is square
            w = _sparse(wpath, n_in, bias.size)
        if weights and w.shape[0] != weights[-1].shape[1]:
            raise DataError(
                str(wpath), None, f"takes {w.shape[0]} neurons, the layer before gives {weights[-1].shape[1]}"
            )
        weights.append(w)
        biases.append(bias)
        acts.append(IDENTITY if last else RELU_CLIP1)
    return LayeredNetwork(
        weights,
        biases,
        acts,
        name=name,
        meta={"source": "IDEA-CUHK/SNICIT", "commit": PINNED_COMMIT, "input_layer": input_layer, "root": str(root)},
    )
