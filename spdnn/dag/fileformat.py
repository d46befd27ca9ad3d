"""The DAG text format: an edge TSV and a node TSV, no header, parsed with pyarrow.

edges: `source<TAB>target<TAB>weight`, one edge per line; source and target are node ids.
nodes: `id<TAB>bias<TAB>activation<TAB>role`, one node per line; activation is one of
       identity, relu, relu_clip (clip at 32, as in the challenge), sigmoid, tanh, relu_clip1
       (clip to [0, 1]); role is one
       of input, hidden, output.
Node ids are positive integers (1-based, the challenge's convention); they need not be
contiguous. Inputs ordered by ascending id are the columns of an input vector; outputs
ordered by ascending id are the columns of the result. A node computes
act(bias + sum of weight * source value); an input node's value is its input (bias and
activation are ignored). Files may be gzip-compressed (name ending in .gz). Empty lines
are errors, so entry i of a file is always line i + 1. Structural checks (dangling ids,
duplicates, cycles, inputs with incoming edges) are in `checks` and `levels`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..io.atomic import atomic_path
from ..io.errors import DataError
from .network import ACTIVATIONS, ROLES, DagSpec

EDGE_COLUMNS = ("source", "target", "weight")
NODE_COLUMNS = ("id", "bias", "activation", "role")
_EDGE_TYPES = {"source": pa.int64(), "target": pa.int64(), "weight": pa.float32()}
_NODE_TYPES = {"id": pa.int64(), "bias": pa.float32(), "activation": pa.string(), "role": pa.string()}


def _opener(path: str | os.PathLike) -> Callable[[], IO[bytes]]:
    path = str(path)
    if path.endswith(".gz"):
        return lambda: gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads as IO[bytes]
    return lambda: open(path, "rb")


def _read_table(path: str | os.PathLike, columns: tuple[str, ...], types: dict, kinds: tuple) -> pa.Table:
    name = str(path)
    open_text = _opener(path)
    try:
        with open_text() as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=list(columns), block_size=16 << 20),
                parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
                ),
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        _diagnose(open_text, name, columns, kinds)
        raise DataError(name, None, f"could not parse: {err}") from err
    if table.num_rows == 0:
        raise DataError(name, None, "file is empty")
    for column in columns:
        col = table.column(column)
        if col.null_count:
            line = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(name, line, f"{column} is empty")
    return table


def _diagnose(open_text: Callable[[], IO[bytes]], name: str, columns: tuple[str, ...], kinds: tuple) -> None:
    """Line-by-line scan (error path only): raise DataError at the first malformed line."""
    number = 0
    with open_text() as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            fields = text.split("\t")
            if len(fields) != len(columns):
                raise DataError(
                    name, number, f"expected {len(columns)} tab-separated fields, found {len(fields)}: {text!r}"
                )
            for label, value, kind in zip(columns, fields, kinds):
                if kind is str:
                    continue
                try:
                    kind(value)
                except ValueError:
                    raise DataError(
                        name, number, f"{label} {value!r} is not {'an integer' if kind is int else 'a number'}"
                    ) from None
    if number == 0:
        raise DataError(name, None, "file is empty")


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def read_edges(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source ids int64, target ids int64, weights float32) in file order; ids > 0, weights finite."""
    name = str(path)
    table = _read_table(path, EDGE_COLUMNS, _EDGE_TYPES, (int, int, float))
    src = table.column("source").to_numpy()
    tgt = table.column("target").to_numpy()
    w = np.ascontiguousarray(table.column("weight").to_numpy(), dtype=np.float32)
    for label, ids in (("source", src), ("target", tgt)):
        i = _first_bad(ids < 1)
        if i is not None:
            raise DataError(name, i + 1, f"{label} id {ids[i]} is not a positive integer")
    i = _first_bad(~np.isfinite(w))
    if i is not None:
        raise DataError(name, i + 1, f"weight {w[i]} is not finite")
    return np.ascontiguousarray(src), np.ascontiguousarray(tgt), w


def _codes(table: pa.Table, column: str, names: tuple[str, ...], name: str) -> np.ndarray:
    values = table.column(column)
    index = pc.index_in(values, value_set=pa.array(names)).to_numpy(zero_copy_only=False)
    missing = np.isnan(index) if index.dtype.kind == "f" else np.zeros(index.size, bool)
    i = _first_bad(missing)
    if i is not None:
        raise DataError(name, i + 1, f"{column} {values[i].as_py()!r} is not one of {', '.join(names)}")
    return index.astype(np.int8)


def read_nodes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64, bias float32, activation codes int8, role codes int8) in file order."""
    name = str(path)
    table = _read_table(path, NODE_COLUMNS, _NODE_TYPES, (int, float, str, str))
    ids = np.ascontiguousarray(table.column("id").to_numpy())
    i = _first_bad(ids < 1)
    if i is not None:
        raise DataError(name, i + 1, f"node id {ids[i]} is not a positive integer")
    bias = np.ascontiguousarray(table.column("bias").to_numpy(), dtype=np.float32)
    i = _first_bad(~np.isfinite(bias))
    if i is not None:
        raise DataError(name, i + 1, f"bias {bias[i]} of node {ids[i]} is not finite")
    return ids, bias, _codes(table, "activation", ACTIVATIONS, name), _codes(table, "role", ROLES, name)


def read_spec(edges: str | os.PathLike, nodes: str | os.PathLike) -> DagSpec:
    """Both files, parsed (not yet checked for structure: see checks.index_edges and levels.levelise)."""
    ids, bias, act, role = read_nodes(nodes)
    src, tgt, w = read_edges(edges)
    return DagSpec(ids, bias, act, role, src, tgt, w, nodes_name=str(nodes), edges_name=str(edges))


def _write_tsv(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        sink: pa.NativeFile
        if str(path).endswith(".gz"):
            sink = pa.CompressedOutputStream(str(tmp), "gzip")
        else:
            sink = pa.OSFile(str(tmp), "wb")
        with sink:
            pacsv.write_csv(
                table,
                sink,
                write_options=pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"),
            )


def write_spec(spec: DagSpec, edges: str | os.PathLike, nodes: str | os.PathLike) -> None:
    """Write both TSVs atomically (floats written so that they read back bit-exact)."""
    _write_tsv(
        edges,
        pa.table(
            {
                "source": pa.array(spec.source, pa.int64()),
                "target": pa.array(spec.target, pa.int64()),
                "weight": pa.array(spec.weight.astype(np.float32), pa.float32()),
            }
        ),
    )
    act = pa.DictionaryArray.from_arrays(pa.array(spec.activation.astype(np.int32)), pa.array(ACTIVATIONS))
    role = pa.DictionaryArray.from_arrays(pa.array(spec.role.astype(np.int32)), pa.array(ROLES))
    _write_tsv(
        nodes,
        pa.table(
            {
                "id": pa.array(spec.ids, pa.int64()),
                "bias": pa.array(spec.bias.astype(np.float32), pa.float32()),
                "activation": act.cast(pa.string()),
                "role": role.cast(pa.string()),
            }
        ),
    )


def default_paths(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """`PREFIX.edges.tsv` and `PREFIX.nodes.tsv`."""
    prefix = str(prefix)
    return Path(prefix + ".edges.tsv"), Path(prefix + ".nodes.tsv")
