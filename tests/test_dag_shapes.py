"""Networks whose levels emerge (random orders, deep and narrow with long skip links, NEAT growth)."""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.compiled import CompiledEngine
from spdnn.dag.cpu import VectorisedEngine
from spdnn.dag.generate import random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.liveness import check_plan, plan_values
from spdnn.dag.shapes import SHAPES, deep_narrow, generate_shape, neat, random_order
from spdnn.dag.validate import check_levels, compare_outputs


@pytest.mark.parametrize("kind", SHAPES)
def test_shapes_levelise_and_engines_agree(kind):
    spec = generate_shape(kind, 15_000, seed=2)
    assert 0.7 * 15_000 <= spec.n_edges <= 1.2 * 15_000
    net = levelise(spec)
    assert check_levels(spec, net) == net.n_levels
    check_plan(net, plan_values(net))
    x = random_inputs(net.n_inputs, 9, seed=1)
    outs = []
    for engine in (VectorisedEngine(), CompiledEngine()):
        engine.prepare(net)
        outs.append(engine.infer(x).outputs)
    assert compare_outputs(outs[1], outs[0]).passed


def test_levels_emerge_deep_and_narrow():
    deep = levelise(deep_narrow(60_000, seed=1))
    wide = levelise(random_order(60_000, seed=1))
    # many more groups than any generation-built net of this size (17-71), and tiny ones
    assert deep.n_levels > 1000 and np.median(deep.group_sizes()) <= 8
    assert deep.n_levels > 3 * wide.n_levels
    # long skip links: some edges jump hundreds of levels
    tgt = np.repeat(np.arange(deep.n_nodes), np.diff(deep.indptr))
    jumps = deep.level[tgt] - deep.level[deep.sources]
    assert np.percentile(jumps, 99) > 100
    # they keep values alive, yet most rows are freed
    assert plan_values(deep).n_slots < 0.5 * deep.n_nodes


def test_neat_growth_is_acyclic_with_emergent_depth():
    spec = neat(50_000, seed=3)
    net = levelise(spec)  # raises on a cycle
    assert net.n_levels > 10
    assert not np.array_equal(np.sort(spec.ids), spec.ids)
    a, b = neat(5_000, seed=9), neat(5_000, seed=9)
    assert np.array_equal(a.source, b.source) and np.array_equal(a.weight, b.weight)
