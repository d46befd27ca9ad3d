"""The DAG cache: one Arrow IPC file holding the levelised network, memory-mapped on load.

One table, one row per node in layout order (level, then id): id, bias, activation,
role, level, and the node's incoming edges as two list columns, `in_sources` (rows of
this table, ascending) and `in_weights`. A list column is an offsets array plus a values
array, so the offsets are the CSR row pointer of the engines and loading costs no copy.
The schema metadata holds the format version, the counts, the level pointer and the
source files' sha256. Like the layered cache, the file is written with a checksum file
beside it (`spdnn.io.checksum`), verified before every read. Limit: fewer than 2^31 edges
(int32 list offsets).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from ..io.checksum import checksummed_output, verify_checksum
from ..io.errors import DataError
from .network import DagNetwork

FORMAT = "spdnn-dag-1"
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("bias", pa.float32()),
        ("activation", pa.int8()),
        ("role", pa.int8()),
        ("level", pa.int32()),
        ("in_sources", pa.list_(pa.int32())),
        ("in_weights", pa.list_(pa.float32())),
    ]
)


def write_cache(net: DagNetwork, path: str | os.PathLike, **provenance: object) -> None:
    """Write the network atomically, then its checksum file; `provenance` (e.g. source checksums)
    goes into the metadata."""
    if net.n_edges >= 2**31:
        raise ValueError(f"{net.n_edges} edges: the cache holds fewer than 2^31")
    offsets = pa.array(net.indptr.astype(np.int32), pa.int32())
    meta = {
        "format": FORMAT,
        "nodes": net.n_nodes,
        "edges": net.n_edges,
        "levels": net.n_levels,
        "level_ptr": net.level_ptr.tolist(),
        **net.meta,
        **provenance,
    }
    table = pa.Table.from_arrays(
        [
            pa.array(net.ids, pa.int64()),
            pa.array(net.bias, pa.float32()),
            pa.array(net.activation, pa.int8()),
            pa.array(net.role, pa.int8()),
            pa.array(net.level, pa.int32()),
            pa.ListArray.from_arrays(offsets, pa.array(net.sources, pa.int32())),
            pa.ListArray.from_arrays(offsets, pa.array(net.weights, pa.float32())),
        ],
        schema=SCHEMA.with_metadata({b"spdnn": json.dumps(meta).encode()}),
    )
    with checksummed_output(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, net.n_nodes))


def read_cache(path: str | os.PathLike, verify: bool = True) -> DagNetwork:
    """Load a cache file (memory-mapped, zero-copy for the big arrays).

    With `verify`, its size and sha256 are first checked against its checksum file: a damaged
    or unchecksummed file is a DataError naming it (and loses its checksum file, so the
    workflow rebuilds it), never a network of wrong values.
    """
    name = str(path)
    if verify:
        verify_checksum(path)
    try:
        source = pa.memory_map(name)
        reader = pa.ipc.open_file(source)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(name, None, f"not an Arrow IPC file: {err}") from err
    raw = (reader.schema.metadata or {}).get(b"spdnn")
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != FORMAT or not reader.schema.equals(SCHEMA):
        raise DataError(name, None, f"not a DAG cache of format {FORMAT}")
    table = reader.read_all().combine_chunks()

    def col(i: int) -> np.ndarray:
        return table.column(i).chunk(0).to_numpy() if table.num_rows else np.zeros(0)

    srcs, wts = table.column(5).chunk(0), table.column(6).chunk(0)
    indptr = srcs.offsets.to_numpy().astype(np.int64)
    net = DagNetwork(
        ids=col(0),
        bias=col(1),
        activation=col(2),
        role=col(3),
        level=col(4),
        level_ptr=np.asarray(meta["level_ptr"], dtype=np.int64),
        indptr=indptr,
        sources=srcs.values.to_numpy(),
        weights=wts.values.to_numpy(),
        meta={k: v for k, v in meta.items() if k != "level_ptr"},
    )
    if net.n_nodes != meta["nodes"] or net.n_edges != meta["edges"] or indptr[-1] != net.n_edges:
        raise DataError(name, None, "cache is truncated or inconsistent")
    return net
