"""Populations of small networks run at once, and recurrent links unrolled over steps (CPU references)."""
from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.compiled import CompiledEngine, ThreadedEngine
from spdnn.dag.cpu import SequentialEngine
from spdnn.dag.generate import evolved, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.population import blocked, population, run_blocked_cpu, union_spec
from spdnn.dag.recurrent import add_recurrent_links, feed_forward, simulate, unroll
from spdnn.dag.shapes import neat
from spdnn.dag.validate import compare_outputs


def one_at_a_time(pop, x):
    outs = []
    for m in pop.members:
        e = SequentialEngine(free_values=False)
        e.prepare(m)
        outs.append(e.infer(x).outputs)
    return outs


def test_population_union_and_blocked_equal_members_one_at_a_time():
    specs = [neat(1500 + 300 * k, seed=k, n_inputs=16, n_outputs=3 + k % 3) for k in range(7)]
    pop = population(specs)
    x = random_inputs(16, 21, seed=4)
    singles = one_at_a_time(pop, x)
    union = levelise(union_spec(pop))
    assert union.n_levels == max(m.n_levels for m in pop.members)
    assert union.n_edges == pop.n_edges and union.n_outputs == pop.out_ptr[-1]
    for engine in (CompiledEngine(), ThreadedEngine(threads=2)):
        engine.prepare(union)
        for got, ref in zip(pop.split(engine.infer(x).outputs), singles):
            assert compare_outputs(got, ref).passed
    b = blocked(pop)
    assert b.member_levels.size == len(specs) + 1
    for k, m in enumerate(pop.members):  # each member's groups are contiguous rows, in order
        lp = b.level_ptr[b.member_levels[k]:b.member_levels[k + 1]]
        assert np.array_equal(np.diff(lp), m.group_sizes()[1:])
    for got, ref in zip(pop.split(run_blocked_cpu(b, x)), singles):
        assert compare_outputs(got, ref).passed


def test_population_members_need_same_inputs():
    with pytest.raises(ValueError, match="different numbers of inputs"):
        population([neat(500, n_inputs=8), neat(500, n_inputs=9)])


def test_recurrent_unrolled_equals_step_by_step():
    base = evolved(2500, seed=6)
    spec, mask = add_recurrent_links(base, 60, seed=1)
    assert mask.sum() > 40
    x = random_inputs(int((spec.role == 0).sum()), 5, seed=2)
    for steps in (1, 2, 5):
        net = levelise(unroll(spec, mask, steps))
        ref = simulate(spec, mask, steps, x)
        engine = CompiledEngine()
        engine.prepare(net)
        assert compare_outputs(engine.infer(x).outputs, ref).passed, steps
    # one step carries nothing over: the feed-forward network
    ff = levelise(feed_forward(spec, mask))
    engine = SequentialEngine()
    engine.prepare(ff)
    assert compare_outputs(engine.infer(x).outputs, simulate(spec, mask, 1, x)).passed
    # with the recurrent links, more steps change the outputs
    assert not np.allclose(simulate(spec, mask, 3, x), simulate(spec, mask, 1, x))


def test_recurrent_self_loop_by_hand():
    # input 1 -> 2 (w 1), self-loop 2 -> 2 (w 0.5), identity: v_t = x + 0.5 v_{t-1}
    from spdnn.dag.network import DagSpec, IDENTITY, INPUT, OUTPUT

    spec = DagSpec(np.array([1, 2]), np.zeros(2, np.float32), np.array([IDENTITY, IDENTITY], np.int8),
                   np.array([INPUT, OUTPUT], np.int8), np.array([1, 2]), np.array([2, 2]),
                   np.array([1.0, 0.5], np.float32))
    mask = np.array([False, True])
    x = np.array([[2.0]], np.float32)
    net = levelise(unroll(spec, mask, 4))
    assert net.n_levels == 5
    e = CompiledEngine()
    e.prepare(net)
    assert e.infer(x).outputs[0, 0] == pytest.approx(2 * (1 + 0.5 + 0.25 + 0.125))
    assert simulate(spec, mask, 4, x)[0, 0] == pytest.approx(3.75)
