"""The DAG text format: an edge TSV and a node TSV, no header, parsed by `spdnn.io.tsv`'s parser.

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
are errors, so entry i of a file is always line i + 1. Field errors (types, ids < 1, weights or
biases not finite float32, unknown activations or roles) come from the column specs below,
named by file and line as the challenge's files' are. Structural checks (dangling ids,
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
import pyarrow.csv as pacsv

from ..io.atomic import atomic_path
from ..io.tsv import Column, Spec, read_table
from .network import ACTIVATIONS, ROLES, DagSpec

EDGE_SPEC: Spec = (
    Column("source", "int", low=1, label="source id"),
    Column("target", "int", low=1, label="target id"),
    Column("weight", "float"),
)
NODE_SPEC: Spec = (
    Column("id", "int", low=1, label="node id"),
    Column("bias", "float"),
    Column("activation", "str", choices=ACTIVATIONS),
    Column("role", "str", choices=ROLES),
)
EDGE_COLUMNS = tuple(c.name for c in EDGE_SPEC)
NODE_COLUMNS = tuple(c.name for c in NODE_SPEC)


def _opener(path: str | os.PathLike) -> Callable[[], IO[bytes]]:
    path = str(path)
    if path.endswith(".gz"):
        return lambda: gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads as IO[bytes]
    return lambda: open(path, "rb")


def read_edges(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source ids int64, target ids int64, weights float32) in file order; ids > 0, weights finite."""
    table = read_table(_opener(path), str(path), EDGE_SPEC)
    return table["source"], table["target"], table["weight"]


def read_nodes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64, bias float32, activation codes int8, role codes int8) in file order."""
    table = read_table(_opener(path), str(path), NODE_SPEC)
    return table["id"], table["bias"], table["activation"], table["role"]


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
