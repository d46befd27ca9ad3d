"""The two in-memory forms of a DAG network and the activation functions.

`DagSpec` is a network as written (node ids in any order, edges by id): what the file
reader and the generators produce. `DagNetwork` is the levelised form every engine runs:
nodes in layout order (level ascending, then id), incoming edges of each node contiguous
(CSR by target, sources ascending), so a dependency group is one contiguous slice of nodes
and of edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import challenge

# Activation codes (stored as int8 in the cache, passed as int to the GPU kernels).
# relu_clip1 (clip to [0, 1]) is the hidden activation of SNICIT's trained MNIST networks.
ACTIVATIONS = ("identity", "relu", "relu_clip", "sigmoid", "tanh", "relu_clip1")
IDENTITY, RELU, RELU_CLIP, SIGMOID, TANH, RELU_CLIP1 = range(len(ACTIVATIONS))
CLIP = challenge.CLIP  # relu_clip is the challenge's ReLU and clip
ROLES = ("input", "hidden", "output")
INPUT, HIDDEN, OUTPUT = range(len(ROLES))


@dataclass
class DagSpec:
    """A network as written: nodes in file order, edges (source id, target id, weight) in file order.

    `nodes_name` / `edges_name` name the files for error messages; entry i of either
    array came from line i + 1 of its file.
    """

    ids: np.ndarray  # int64[n], unique positive ids
    bias: np.ndarray  # float32[n]
    activation: np.ndarray  # int8[n], index into ACTIVATIONS
    role: np.ndarray  # int8[n], index into ROLES
    source: np.ndarray  # int64[E], node ids
    target: np.ndarray  # int64[E], node ids
    weight: np.ndarray  # float32[E]
    nodes_name: str = "<nodes>"
    edges_name: str = "<edges>"

    @property
    def n_nodes(self) -> int:
        return int(self.ids.size)

    @property
    def n_edges(self) -> int:
        return int(self.source.size)


@dataclass
class DagNetwork:
    """A levelised network. Row r of every per-node array is the r-th node in layout order.

    level_ptr[g] .. level_ptr[g + 1] are the rows of dependency group g; group 0 holds exactly
    the input nodes (ascending id, so row i is input column i). Node r's incoming edges are
    indptr[r] .. indptr[r + 1] of `sources` (rows, ascending, all in earlier groups) and
    `weights`. output_rows lists the output nodes' rows in ascending id (output column order).
    """

    ids: np.ndarray  # int64[n]
    bias: np.ndarray  # float32[n]
    activation: np.ndarray  # int8[n]
    role: np.ndarray  # int8[n]
    level: np.ndarray  # int32[n]
    level_ptr: np.ndarray  # int64[levels + 1]
    indptr: np.ndarray  # int64[n + 1]
    sources: np.ndarray  # int32[E]
    weights: np.ndarray  # float32[E]
    meta: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(self.ids.size)

    @property
    def n_edges(self) -> int:
        return int(self.sources.size)

    @property
    def n_levels(self) -> int:
        return int(self.level_ptr.size - 1)

    @property
    def n_inputs(self) -> int:
        return int(self.level_ptr[1])

    @property
    def output_rows(self) -> np.ndarray:
        rows = np.flatnonzero(self.role == OUTPUT)
        return rows[np.argsort(self.ids[rows], kind="stable")]

    @property
    def n_outputs(self) -> int:
        return int(np.count_nonzero(self.role == OUTPUT))

    def group_sizes(self) -> np.ndarray:
        return np.diff(self.level_ptr)

    def summary(self) -> dict:
        sizes = self.group_sizes()
        indeg = np.diff(self.indptr)[self.n_inputs :]
        return {
            "nodes": self.n_nodes,
            "edges": self.n_edges,
            "inputs": self.n_inputs,
            "outputs": self.n_outputs,
            "levels": self.n_levels,
            "max_group": int(sizes.max()),
            "mean_in_degree": float(indeg.mean()) if indeg.size else 0.0,
            "max_in_degree": int(indeg.max()) if indeg.size else 0,
        }


def activate(z: np.ndarray, code: int) -> np.ndarray:
    """Apply activation `code` to float32 `z` in place and return it."""
    if code == RELU:
        np.maximum(z, 0, out=z)
    elif code == RELU_CLIP:
        challenge.relu_clip(z)
    elif code == SIGMOID:
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)
    elif code == TANH:
        np.tanh(z, out=z)
    elif code == RELU_CLIP1:
        np.clip(z, 0, 1, out=z)
    elif code != IDENTITY:
        raise ValueError(f"unknown activation code {code}")
    return z


def activate_rows(z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Apply per-row activation codes to a (rows, batch) float32 block in place."""
    present = np.unique(codes)
    if present.size == 1:
        return activate(z, int(present[0]))
    for code in present:
        rows = np.flatnonzero(codes == code)
        z[rows] = activate(z[rows], int(code))
    return z
