"""Sparse neural networks of arbitrary structure (a DAG, not layers), after Gajurel, Louis & Harris 2020.

Any neuron may feed any later neuron. The network is read from an edge TSV and a node TSV
(`fileformat`), checked and levelised once into dependency groups (`levels`: every neuron
whose inputs are all computed belongs to the next group), stored in an Arrow cache
(`cache`), and run by engines that activate one group at a time (`compiled`: numba
baselines, one thread and all cores; `cpu`: the naive sequential reference and a vectorised
engine; `cuda`: pycuda kernels; `peer`: CuPy per group). Value rows are freed after their last
reader (`liveness`). Workloads: `generate` (level = generation), `shapes` (levels emerge),
`snicit` + `layered` + `mnist` (real pruned MNIST networks, also as layers), `population`
(+ `population_cuda`, one launch) and `recurrent` (unrolled over steps). See docs/dag.md.
"""

from __future__ import annotations

from .network import ACTIVATIONS, ROLES, DagNetwork, DagSpec

__all__ = ["ACTIVATIONS", "ROLES", "DagNetwork", "DagSpec"]
