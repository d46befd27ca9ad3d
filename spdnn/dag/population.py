"""Populations: many small networks (as evolution evaluates them) run on one batch at once.

All members take the same inputs (the same task's input vectors), so the population shares
one set of input nodes; every other node belongs to one member. Two layouts of the same
population:

* `union`: one DagSpec, levelised like any DAG: group g of the union is group g of every
  member, so a group engine runs the whole population in (deepest member's levels) steps.
  Output columns: member 0's outputs (ascending id), then member 1's, ... (`out_ptr`).
* `blocked`: rows member by member (each in its own level order) after the shared inputs,
  with every member's group boundaries (`member_levels`): what the one-launch population
  kernel walks, one block per member and tile of input vectors (population_cuda.py). It is a
  topological order, so the compiled sequential kernel runs it as it is (the CPU check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .levels import SpecParts, levelise
from .network import INPUT, DagNetwork, DagSpec


@dataclass
class Population:
    members: list[DagNetwork]
    n_inputs: int

    @property
    def out_ptr(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum([m.n_outputs for m in self.members]))).astype(np.int64)

    @property
    def n_edges(self) -> int:
        return int(sum(m.n_edges for m in self.members))

    def split(self, outputs: np.ndarray) -> list[np.ndarray]:
        """The population's (batch, all outputs) block as one (batch, outputs) array per member."""
        p = self.out_ptr
        return [outputs[:, p[k] : p[k + 1]] for k in range(len(self.members))]


def population(specs: list[DagSpec]) -> Population:
    """Levelise every member; they must all take the same number of inputs."""
    members = [levelise(s) for s in specs]
    counts = {m.n_inputs for m in members}
    if len(counts) != 1:
        raise ValueError(f"population members take different numbers of inputs: {sorted(counts)}")
    return Population(members, counts.pop())


def union_spec(pop: Population) -> DagSpec:
    """One DAG of the whole population (see the module docstring): inputs 1 .. n, then the members' nodes."""
    n_in = pop.n_inputs
    parts = SpecParts()
    parts.add_nodes(
        np.arange(1, n_in + 1), np.zeros(n_in, np.float32), np.zeros(n_in, np.int8), np.full(n_in, INPUT, np.int8)
    )
    base = n_in
    for m in pop.members:
        # member rows keep their layout order; id = base + rank of the id among the member's nodes,
        # so ascending union ids list member 0's outputs first, each member's in its own id order
        rank = np.empty(m.n_nodes, dtype=np.int64)
        rank[np.argsort(m.ids, kind="stable")] = np.arange(m.n_nodes)
        new_id = np.where(np.arange(m.n_nodes) < m.n_inputs, np.arange(m.n_nodes) + 1, base + 1 + rank)
        keep = np.arange(m.n_inputs, m.n_nodes)
        parts.add_nodes(new_id[keep], m.bias[keep], m.activation[keep], m.role[keep])
        tgt_rows = np.repeat(np.arange(m.n_nodes), np.diff(m.indptr))
        parts.add_edges(new_id[m.sources], new_id[tgt_rows], m.weights)
        base += m.n_nodes
    return parts.spec("<population nodes>", "<population edges>")


@dataclass
class BlockedPopulation:
    """Member-major rows: inputs 0 .. n_inputs - 1, then member k's non-input rows, level by level.

    level_ptr[member_levels[k] .. member_levels[k + 1]] are member k's group boundaries (rows),
    from its first computed group to one past its last row. output_rows: member by member.
    """

    indptr: np.ndarray  # int64[rows + 1]
    sources: np.ndarray  # int32[edges]
    weights: np.ndarray  # float32[edges]
    bias: np.ndarray  # float32[rows]
    activation: np.ndarray  # int8[rows]
    level_ptr: np.ndarray  # int64[sum of (levels - 1) + members]
    member_levels: np.ndarray  # int64[members + 1]
    output_rows: np.ndarray  # int64[all outputs]
    n_inputs: int

    @property
    def n_rows(self) -> int:
        return int(self.bias.size)


def blocked(pop: Population) -> BlockedPopulation:
    """The member-major layout of a population (see BlockedPopulation)."""
    n_in = pop.n_inputs
    indptr, sources, weights, bias, act, lps, outs = [np.zeros(1, np.int64)], [], [], [], [], [], []
    member_levels = [0]
    row0, edge0 = n_in, 0
    bias.append(np.zeros(n_in, np.float32))
    act.append(np.zeros(n_in, np.int8))
    indptr.append(np.zeros(n_in, np.int64))
    for m in pop.members:
        shift = row0 - n_in  # member row r >= n_inputs goes to r + shift; inputs stay
        e0 = int(m.indptr[m.n_inputs])
        indptr.append(m.indptr[m.n_inputs + 1 :] - e0 + edge0)
        s = m.sources[e0:].astype(np.int64)
        sources.append(np.where(s < n_in, s, s + shift))
        weights.append(m.weights[e0:])
        bias.append(m.bias[m.n_inputs :])
        act.append(m.activation[m.n_inputs :])
        lps.append(m.level_ptr[1:] + shift)
        member_levels.append(member_levels[-1] + m.level_ptr.size - 1)
        outs.append(m.output_rows + shift)
        row0 += m.n_nodes - n_in
        edge0 += m.n_edges - e0
    return BlockedPopulation(
        np.concatenate(indptr),
        np.concatenate(sources).astype(np.int32),
        np.concatenate(weights).astype(np.float32),
        np.concatenate(bias),
        np.concatenate(act),
        np.concatenate(lps),
        np.asarray(member_levels, np.int64),
        np.concatenate(outs),
        n_in,
    )


def run_blocked_cpu(b: BlockedPopulation, x: np.ndarray) -> np.ndarray:
    """The blocked layout run by the compiled sequential kernel (rows in order): (batch, all outputs)."""
    from .cpu_kernels import run_sequential

    x = np.ascontiguousarray(x, dtype=np.float32)
    values = np.empty((b.n_rows, x.shape[0]), dtype=np.float32)
    values[: b.n_inputs] = x.T
    run_sequential(
        values, b.n_inputs, b.indptr, b.sources, b.weights, b.bias, b.activation, np.arange(b.n_rows, dtype=np.int32)
    )
    return np.ascontiguousarray(values[b.output_rows].T)
