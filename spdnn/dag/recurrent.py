"""Recurrent links, unrolled over a given number of steps into a DAG.

A recurrent network is a DagSpec whose edges are split by a mask: feed-forward edges (an
acyclic part, read within a step) and recurrent ones (read the source's value of the step
before; self-loops and backward edges are allowed). The input vector is presented at every
step; before step 0 every value, inputs included, is 0, so a recurrent edge adds nothing at
step 0. The outputs are read after the last step.

`unroll` writes T copies of every non-input node (copy t of node i has id i + t * M, M the
largest id; inputs are shared by all copies): feed-forward edges join nodes of one copy,
recurrent edges go from copy t - 1 to copy t, and only the last copy's outputs stay outputs.
Any DAG engine then runs it. `simulate` is the independent reference: step by step, node by
node, carrying the previous step's values.
"""

from __future__ import annotations

import numpy as np

from .levels import SpecParts, levelise
from .network import HIDDEN, INPUT, OUTPUT, DagSpec, activate


def _check(spec: DagSpec, recurrent: np.ndarray, steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    if recurrent.shape != spec.source.shape or recurrent.dtype != bool:
        raise ValueError("recurrent must be a boolean mask over the edges")


def feed_forward(spec: DagSpec, recurrent: np.ndarray) -> DagSpec:
    """The spec without its recurrent edges (one step, nothing carried over)."""
    keep = ~recurrent
    return DagSpec(
        spec.ids,
        spec.bias,
        spec.activation,
        spec.role,
        spec.source[keep],
        spec.target[keep],
        spec.weight[keep],
        spec.nodes_name,
        spec.edges_name,
    )


def unroll(spec: DagSpec, recurrent: np.ndarray, steps: int) -> DagSpec:
    """The network unrolled over `steps` steps as one DAG (see the module docstring)."""
    _check(spec, recurrent, steps)
    m = int(spec.ids.max())
    is_input = dict(zip(spec.ids.tolist(), (spec.role == INPUT).tolist()))
    src_input = np.fromiter((is_input.get(int(s), False) for s in spec.source), bool, spec.source.size)
    hidden = spec.role != INPUT
    parts = SpecParts()
    parts.add_nodes(spec.ids[~hidden], spec.bias[~hidden], spec.activation[~hidden], spec.role[~hidden])
    ff, rec = ~recurrent, recurrent
    for t in range(steps):
        r = spec.role[hidden].copy()
        if t < steps - 1:
            r[r == OUTPUT] = HIDDEN
        parts.add_nodes(spec.ids[hidden] + t * m, spec.bias[hidden], spec.activation[hidden], r)
        parts.add_edges(
            np.where(src_input[ff], spec.source[ff], spec.source[ff] + t * m), spec.target[ff] + t * m, spec.weight[ff]
        )
        if t:
            src = np.where(src_input[rec], spec.source[rec], spec.source[rec] + (t - 1) * m)
            parts.add_edges(src, spec.target[rec] + t * m, spec.weight[rec])
    return parts.spec(spec.nodes_name, f"{spec.edges_name} (unrolled x{steps})")


def simulate(spec: DagSpec, recurrent: np.ndarray, steps: int, x: np.ndarray) -> np.ndarray:
    """Reference: step by step, node by node (plain Python, small networks). Returns (batch, outputs)."""
    _check(spec, recurrent, steps)
    order = levelise(feed_forward(spec, recurrent)).ids  # a topological order of the feed-forward part
    x = np.asarray(x, dtype=np.float32)
    batch = x.shape[0]
    row = {int(i): k for k, i in enumerate(spec.ids)}
    inputs = np.sort(spec.ids[spec.role == INPUT])
    ff_in: dict[int, list] = {int(i): [] for i in spec.ids}
    rec_in: dict[int, list] = {int(i): [] for i in spec.ids}
    for s, t, wt, r in zip(spec.source.tolist(), spec.target.tolist(), spec.weight.tolist(), recurrent.tolist()):
        (rec_in if r else ff_in)[t].append((s, np.float32(wt)))
    prev = {int(i): np.zeros(batch, np.float32) for i in spec.ids}
    for _ in range(steps):
        cur = {int(i): x[:, c] for c, i in enumerate(inputs)}
        for v in order.tolist():
            if v in cur:
                continue
            z = np.zeros(batch, np.float32)
            for s, wt in ff_in[v]:
                z += wt * cur[s]
            for s, wt in rec_in[v]:
                z += wt * prev[s]
            z += spec.bias[row[v]]
            cur[v] = activate(z, int(spec.activation[row[v]]))
        prev = cur
    outs = np.sort(spec.ids[spec.role == OUTPUT])
    return np.stack([prev[int(i)] for i in outs], axis=1) if outs.size else np.zeros((batch, 0), np.float32)


def add_recurrent_links(spec: DagSpec, n_links: int, seed: int = 0) -> tuple[DagSpec, np.ndarray]:
    """The spec plus up to `n_links` distinct random recurrent edges between non-input nodes (self-loops
    and backward links included) and the mask."""
    rng = np.random.default_rng([seed, 21])
    nodes = spec.ids[spec.role != INPUT]
    pairs = np.unique(np.stack([rng.choice(nodes, size=n_links), rng.choice(nodes, size=n_links)], axis=1), axis=0)
    src, tgt = pairs[:, 0], pairs[:, 1]
    n_links = src.size
    w = (rng.normal(0, 0.5, size=n_links)).astype(np.float32)
    mask = np.concatenate([np.zeros(spec.n_edges, bool), np.ones(n_links, bool)])
    out = DagSpec(
        spec.ids,
        spec.bias,
        spec.activation,
        spec.role,
        np.concatenate([spec.source, src]),
        np.concatenate([spec.target, tgt]),
        np.concatenate([spec.weight, w]),
        spec.nodes_name,
        spec.edges_name,
    )
    return out, mask
