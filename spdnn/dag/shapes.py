"""Networks whose levels emerge: built in a random order, not generation by generation.

generate.py fixes every node's level to its generation, so its networks are wide and
shallow by construction. Here the levels come out of the edges:

* random_order: nodes in a random topological order; each node's sources are mostly among
  the `window` nodes just before it, plus a share `skip` drawn from the whole past (long skip
  links). A wide window gives a moderately deep DAG; a narrow one (`deep_narrow`) gives
  thousands of tiny groups, and the skip links keep old values alive for a long time.
* neat: grown as NEAT grows a genome. Start with inputs joined to outputs; each round splits
  a share of the edges (a -> b becomes a -> new -> b, the old edge dropped) and adds random
  forward connections. Positions in (0, 1) keep the order (a new node sits between its two
  ends), so the graph stays acyclic; its depth is whatever the splits made.
All vectorised per round; ids are shuffled; activations mixed; outputs identity.
"""

from __future__ import annotations

import numpy as np

from .network import HIDDEN, IDENTITY, INPUT, OUTPUT, RELU, SIGMOID, TANH, DagSpec

SHAPES = ("random-order", "deep-narrow", "neat")
_MIXED = np.array([RELU, TANH, SIGMOID, IDENTITY], dtype=np.int8)


def _spec(n: int, src: np.ndarray, tgt: np.ndarray, role: np.ndarray, rng: np.random.Generator, name: str) -> DagSpec:
    """A DagSpec over nodes 0 .. n - 1 (in a topological order): dedupe, weights, ids shuffled."""
    key = np.unique(tgt.astype(np.int64) * n + src)
    tgt, src = key // n, key % n
    indeg = np.bincount(tgt, minlength=n)
    w = rng.normal(0.0, 1.0, size=src.size) * 1.5 / np.sqrt(np.maximum(indeg[tgt], 1))
    act = rng.choice(_MIXED, size=n, p=[0.4, 0.3, 0.2, 0.1])
    act[role == OUTPUT] = IDENTITY
    bias = rng.normal(0.0, 0.1, size=n).astype(np.float32)
    ids = rng.permutation(n).astype(np.int64) + 1
    return DagSpec(
        ids,
        bias,
        act,
        role,
        ids[src],
        ids[tgt],
        w.astype(np.float32),
        nodes_name=f"<{name} nodes>",
        edges_name=f"<{name} edges>",
    )


def random_order(
    n_edges: int,
    seed: int = 0,
    window: int | None = None,
    skip: float = 0.1,
    mean_degree: float = 16.0,
    n_inputs: int = 256,
    n_outputs: int = 64,
) -> DagSpec:
    """A DAG of about n_edges edges over a random topological order (see the module docstring)."""
    rng = np.random.default_rng([seed, 11])
    n = max(n_inputs + n_outputs + 1, int(n_edges / mean_degree) + n_inputs)
    window = window or max(32, (n - n_inputs) // 16)
    pos = np.arange(n_inputs, n)
    k = np.maximum(1, rng.poisson(mean_degree, size=pos.size))
    tgt = np.repeat(pos, k)
    local = rng.random(tgt.size) >= skip
    reach = np.where(local, np.minimum(window, tgt), tgt)  # how far back a source may lie
    src = tgt - 1 - (rng.random(tgt.size) * reach).astype(np.int64)
    role = np.full(n, HIDDEN, dtype=np.int8)
    role[:n_inputs] = INPUT
    role[n - n_outputs :] = OUTPUT
    return _spec(n, src, tgt, role, rng, "random-order")


def deep_narrow(n_edges: int, seed: int = 0, window: int = 48, skip: float = 0.05) -> DagSpec:
    """random_order with a narrow window: thousands of small groups and long skip links."""
    return random_order(n_edges, seed, window=window, skip=skip, mean_degree=12.0, n_inputs=32, n_outputs=16)


def neat(
    n_edges: int, seed: int = 0, n_inputs: int = 64, n_outputs: int = 16, split: float = 0.03, connect: float = 0.12
) -> DagSpec:
    """A NEAT-grown DAG of about n_edges edges (see the module docstring)."""
    rng = np.random.default_rng([seed, 12])
    pos = np.concatenate([np.zeros(n_inputs), np.ones(n_outputs)])
    src = np.repeat(np.arange(n_inputs), n_outputs)
    tgt = np.tile(np.arange(n_inputs, n_inputs + n_outputs), n_inputs)
    while src.size < n_edges:
        n = pos.size
        # split: each chosen edge a -> b becomes a -> new -> b at a position between them
        chosen = rng.random(src.size) < split
        a, b = src[chosen], tgt[chosen]
        new = np.arange(n, n + a.size)
        pos = np.concatenate([pos, pos[a] + (pos[b] - pos[a]) * rng.uniform(0.05, 0.95, size=a.size)])
        src = np.concatenate([src[~chosen], a, new])
        tgt = np.concatenate([tgt[~chosen], new, b])
        # connect: random pairs, oriented by position; no edge into an input, none out of an output
        m = int(connect * src.size)
        n = pos.size
        u, v = rng.integers(0, n, size=m), rng.integers(0, n, size=m)
        forward = pos[u] < pos[v]
        u, v = np.where(forward, u, v), np.where(forward, v, u)
        ok = (pos[u] < pos[v]) & (v >= n_inputs) & ~((u >= n_inputs) & (u < n_inputs + n_outputs))
        src, tgt = np.concatenate([src, u[ok]]), np.concatenate([tgt, v[ok]])
    n = pos.size
    order = np.lexsort((np.arange(n), pos))  # a topological order: by position
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    role = np.full(n, HIDDEN, dtype=np.int8)
    role[:n_inputs] = INPUT
    role[n_inputs : n_inputs + n_outputs] = OUTPUT
    return _spec(n, rank[src], rank[tgt], role[order], rng, "neat")


def generate_shape(kind: str, n_edges: int, seed: int = 0) -> DagSpec:
    """A network of shape `kind` (random-order | deep-narrow | neat) with about n_edges edges."""
    if kind == "random-order":
        return random_order(n_edges, seed)
    if kind == "deep-narrow":
        return deep_narrow(n_edges, seed)
    if kind == "neat":
        return neat(n_edges, seed)
    raise ValueError(f"unknown DAG shape {kind!r}: choose one of {', '.join(SHAPES)}")
