"""Generators of realistic arbitrary-structure networks, and the challenge's layers as a DAG.

Both random families are built generation by generation: generation 0 holds the inputs;
every node of generation g takes one source from generation g - 1 (so its level is exactly
g) and its other sources from any earlier generation, at a distance d >= 1 drawn from a
geometric law (P(d = 1) = `local`), uniformly inside the generation. Duplicate
(source, target) pairs are dropped, so the edge count lands slightly under the target.

* pruned_layered: a magnitude-pruned layered net with skip connections: widths close to
  constant, a binomial-like in-degree (the survivors of a dense layer), 85% of the edges
  to the previous layer, weights He-scaled with the small magnitudes pruned away (none in
  (-t, t), t = sigma / 2.5), relu hidden nodes, identity outputs.
* evolved: an evolved-style (NEAT-like) DAG: widths vary (log-normal), in-degrees are
  heavy-tailed (log-normal: most nodes have a few inputs, hubs have thousands), sources reach
  far back (P(d = 1) = 0.5), activations mixed (relu, tanh, sigmoid, identity), ids shuffled.
Sizes from thousands to tens of millions of edges take seconds (all numpy).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .network import HIDDEN, IDENTITY, INPUT, OUTPUT, RELU, RELU_CLIP, SIGMOID, TANH, DagSpec

KINDS = ("pruned", "evolved")


def _dag_from_generations(
    widths: np.ndarray, degrees: np.ndarray, local: float, weight_scale: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (source index, target index, weight) for nodes numbered generation by generation.

    degrees[v] is the wanted in-degree of node v (ignored for generation 0).
    """
    starts = np.concatenate(([0], np.cumsum(widths)))
    n = int(starts[-1])
    gen = np.repeat(np.arange(widths.size), widths)
    before = starts[gen]  # nodes in earlier generations
    k = np.minimum(degrees, before)
    k[gen == 0] = 0
    k = np.maximum(k, (gen > 0).astype(np.int64))
    tgt = np.repeat(np.arange(n, dtype=np.int64), k)
    tgen = gen[tgt]
    first = np.zeros(tgt.size, dtype=bool)
    first[np.concatenate(([0], np.cumsum(k)[:-1]))[k > 0]] = True
    dist = np.where(first, 1, rng.geometric(local, size=tgt.size))
    dist = np.minimum(dist, tgen)
    sgen = tgen - dist
    src = starts[sgen] + (rng.random(tgt.size) * widths[sgen]).astype(np.int64)
    key = np.unique(tgt * n + src)
    tgt, src = key // n, key % n
    indeg = np.bincount(tgt, minlength=n)
    if weight_scale == "pruned":
        # He-scaled magnitudes with |w| < t pruned: |w| = sigma * (t + Exp(1)), random sign
        sigma = np.sqrt(2.0 / np.maximum(indeg[tgt], 1))
        mag = sigma * (0.5 + rng.exponential(0.6, size=tgt.size)) / 1.25  # E[mag^2] = sigma^2
    else:
        mag = np.abs(rng.normal(0.0, 1.0, size=tgt.size)) * 1.5 / np.sqrt(np.maximum(indeg[tgt], 1))
    sign = np.where(rng.random(tgt.size) < 0.5, 1.0, -1.0)
    return src, tgt, (sign * mag).astype(np.float32)


def pruned_layered(
    n_edges: int,
    seed: int = 0,
    depth: int | None = None,
    mean_degree: float = 32.0,
    skip: float = 0.15,
    n_outputs: int | None = None,
) -> DagSpec:
    """A pruned layered network with skip connections of about `n_edges` edges."""
    rng = np.random.default_rng([seed, 1])
    depth = depth or int(min(32, max(6, round(4 * math.log10(max(n_edges, 10))))))
    if n_edges / (mean_degree * depth) < 2 * mean_degree:  # small nets: layers at least twice the in-degree
        mean_degree = math.sqrt(n_edges / (2 * depth))
    width = max(4, int(round(n_edges / (mean_degree * depth))))
    widths = np.maximum(2, np.round(width * rng.uniform(0.85, 1.15, size=depth + 1))).astype(np.int64)
    widths[-1] = n_outputs or max(2, min(width, 100))
    n = int(widths.sum())
    degrees = np.maximum(1, rng.binomial(int(2 * mean_degree), 0.5, size=n)).astype(np.int64)
    src, tgt, w = _dag_from_generations(widths, degrees, 1.0 - skip, "pruned", rng)
    role = np.full(n, HIDDEN, dtype=np.int8)
    role[: widths[0]] = INPUT
    role[n - widths[-1] :] = OUTPUT
    act = np.where(role == OUTPUT, IDENTITY, RELU).astype(np.int8)
    bias = rng.normal(0.0, 0.05, size=n).astype(np.float32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    return DagSpec(
        ids, bias, act, role, ids[src], ids[tgt], w, nodes_name="<pruned nodes>", edges_name="<pruned edges>"
    )


def evolved(
    n_edges: int, seed: int = 0, depth: int | None = None, mean_degree: float = 12.0, n_outputs: int = 64
) -> DagSpec:
    """An evolved-style DAG of about `n_edges` edges (varying widths, heavy-tailed in-degrees)."""
    rng = np.random.default_rng([seed, 2])
    depth = depth or int(min(80, max(12, round(10 * math.log10(max(n_edges, 10))))))
    n_target = max(depth * 4, int(n_edges / mean_degree))
    widths = rng.lognormal(0.0, 0.6, size=depth + 1)
    widths = np.maximum(2, np.round(widths / widths.sum() * n_target)).astype(np.int64)
    widths[-1] = n_outputs
    n = int(widths.sum())
    sigma = 1.2
    mu = math.log(mean_degree) - sigma**2 / 2
    degrees = np.clip(np.round(rng.lognormal(mu, sigma, size=n)), 1, 4096).astype(np.int64)
    src, tgt, w = _dag_from_generations(widths, degrees, 0.5, "evolved", rng)
    role = np.full(n, HIDDEN, dtype=np.int8)
    role[: widths[0]] = INPUT
    role[n - widths[-1] :] = OUTPUT
    act = rng.choice(np.array([RELU, TANH, SIGMOID, IDENTITY], dtype=np.int8), size=n, p=[0.4, 0.3, 0.2, 0.1])
    act[role == OUTPUT] = IDENTITY
    bias = rng.normal(0.0, 0.1, size=n).astype(np.float32)
    ids = rng.permutation(n).astype(np.int64) + 1  # arbitrary ids, as an evolved genome would have
    return DagSpec(
        ids, bias, act, role, ids[src], ids[tgt], w, nodes_name="<evolved nodes>", edges_name="<evolved edges>"
    )


def generate(kind: str, n_edges: int, seed: int = 0) -> DagSpec:
    """A network of family `kind` (pruned | evolved) with about n_edges edges."""
    if kind == "pruned":
        return pruned_layered(n_edges, seed)
    if kind == "evolved":
        return evolved(n_edges, seed)
    raise ValueError(f"unknown DAG kind {kind!r}: choose one of {', '.join(KINDS)}")


def random_inputs(n_inputs: int, batch: int, seed: int = 0, density: float = 0.5) -> np.ndarray:
    """A batch of input vectors in [0, 1), about `density` of them nonzero, float32 (batch, n_inputs)."""
    rng = np.random.default_rng([seed, 3])
    x = rng.random((batch, n_inputs), dtype=np.float32)
    x[rng.random((batch, n_inputs)) >= density] = 0
    return x


def challenge_dag(layers: list[sp.spmatrix], bias: float) -> DagSpec:
    """The challenge's layered network as a DAG: neuron j of layer k (k = 0 .. L) has id k*N + j + 1.

    Layer-0 neurons are the inputs, layer-L neurons the outputs; every other node is
    relu_clip with the layer bias. The challenge adds the bias only on the nonzeros of Z;
    for bias <= 0 (every challenge network) adding it everywhere gives the same values
    (relu(0 + b) = 0), so the DAG computes exactly the challenge's function.
    """
    if bias > 0:
        raise ValueError("challenge_dag needs bias <= 0 (the bias-on-nonzeros rule is then the same as everywhere)")
    n = layers[0].shape[0]
    src, tgt, w = [], [], []
    for k, mat in enumerate(layers):
        coo = sp.coo_matrix(mat)
        src.append(k * n + coo.row.astype(np.int64) + 1)
        tgt.append((k + 1) * n + coo.col.astype(np.int64) + 1)
        w.append(coo.data.astype(np.float32))
    total = (len(layers) + 1) * n
    role = np.full(total, HIDDEN, dtype=np.int8)
    role[:n] = INPUT
    role[-n:] = OUTPUT
    return DagSpec(
        np.arange(1, total + 1, dtype=np.int64),
        np.full(total, bias, dtype=np.float32),
        np.full(total, RELU_CLIP, dtype=np.int8),
        role,
        np.concatenate(src),
        np.concatenate(tgt),
        np.concatenate(w),
        nodes_name="<challenge nodes>",
        edges_name="<challenge edges>",
    )
