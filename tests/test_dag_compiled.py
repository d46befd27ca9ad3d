"""Compiled CPU engines (numba) and value-row freeing: same results as the references, less memory.

Networks are small so that numba's compile (a few seconds, cached on disk) dominates.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from spdnn.dag.compiled import CompiledEngine, ThreadedEngine  # noqa: E402
from spdnn.dag.cpu import SequentialEngine  # noqa: E402
from spdnn.dag.generate import evolved, generate, random_inputs  # noqa: E402
from spdnn.dag.levels import levelise  # noqa: E402
from spdnn.dag.liveness import check_plan, plan_values, release_groups  # noqa: E402
from spdnn.dag.memory import measure_peak  # noqa: E402
from spdnn.dag.network import ACTIVATIONS, HIDDEN, INPUT, OUTPUT, DagSpec  # noqa: E402
from spdnn.dag.registry import get_dag_engine  # noqa: E402
from spdnn.dag.validate import compare_outputs  # noqa: E402


def reference(net, x):
    ref = SequentialEngine(free_values=False)
    ref.prepare(net)
    return ref.infer(x).outputs


@pytest.mark.parametrize("kind, batch", [("pruned", 1), ("evolved", 1), ("pruned", 7), ("evolved", 64)])
def test_compiled_engines_match_sequential(kind, batch):
    net = levelise(generate(kind, 20_000, seed=batch))
    x = random_inputs(net.n_inputs, batch, seed=3)
    ref = reference(net, x)
    for engine in (CompiledEngine(), ThreadedEngine(threads=2), get_dag_engine("threaded", free_values=False)):
        engine.prepare(net)
        result = engine.infer(x)
        assert result.outputs.shape == ref.shape
        comparison = compare_outputs(result.outputs, ref)
        assert comparison.passed, (engine.name, comparison)
    # batch 64 >= 16 per thread: column ranges; smaller: the nodes of each group split
    assert result.details["mode"] == ("columns" if batch >= 32 else "groups")


def test_every_activation_compiled():
    # one hidden node per activation code, all fed by both inputs; each is also an output
    k = len(ACTIVATIONS)
    ids = np.arange(1, k + 3)
    role = np.array([INPUT, INPUT] + [OUTPUT] * k, np.int8)
    act = np.array([0, 0] + list(range(k)), np.int8)
    src = np.repeat([1, 2], k)
    tgt = np.tile(np.arange(3, k + 3), 2)
    w = np.linspace(-3, 3, 2 * k).astype(np.float32)
    bias = np.linspace(-0.5, 0.5, k + 2).astype(np.float32)
    net = levelise(DagSpec(ids, bias, act, role, src, tgt, w))
    x = np.random.default_rng(0).normal(0, 20, size=(50, 2)).astype(np.float32)
    with np.errstate(over="ignore"):  # exp overflows to inf in the sigmoid: 1 / inf = 0, as intended
        ref = reference(net, x)
    for engine in (CompiledEngine(), ThreadedEngine(threads=2)):
        engine.prepare(net)
        np.testing.assert_allclose(engine.infer(x).outputs, ref, rtol=2e-6, atol=1e-6)
        engine.prepare(net)
        np.testing.assert_allclose(engine.infer(x[:1]).outputs, ref[:1], rtol=2e-6, atol=1e-6)


def test_freeing_changes_memory_not_values():
    net = levelise(generate("pruned", 30_000, seed=4))
    x = random_inputs(net.n_inputs, 256, seed=1)
    outs, peaks = {}, {}
    for free in (False, True):
        for name in ("compiled", "vectorised", "sequential"):
            engine = get_dag_engine(name, free_values=free)
            engine.prepare(net)
            result, peak = measure_peak(engine, x)
            outs[name, free], peaks[name, free] = result.outputs, peak
            assert result.details["value_slots"] == (engine.plan.n_slots if free else net.n_nodes)
    # the compiled engine sums in the same order whatever the slots: bit for bit equal
    assert np.array_equal(outs["compiled", True], outs["compiled", False])
    for key in outs:
        assert compare_outputs(outs[key], outs["sequential", False]).passed, key
    plan = plan_values(net)
    assert plan.n_slots < 0.5 * net.n_nodes
    # measured: one value row per slot (float32 x batch) dominates the call's memory
    for name in ("compiled", "vectorised"):
        assert peaks[name, True] < 0.6 * peaks[name, False]
    assert peaks["compiled", False] >= net.n_nodes * 256 * 4
    # value rows + the output block and its gather (two copies of the outputs)
    assert peaks["compiled", True] <= (plan.n_slots + 2 * net.n_outputs) * 256 * 4 * 1.05


@pytest.mark.parametrize("seed", range(4))
def test_value_plan_never_reuses_a_live_row(seed):
    net = levelise(evolved(5000, seed=seed))
    plan = plan_values(net)
    check_plan(net, plan)
    assert np.array_equal(plan.slot[: net.n_inputs], np.arange(net.n_inputs))
    # a live row is never taken: at every group, the slots in use are distinct
    release = release_groups(net)
    for g in range(net.n_levels):
        live = (net.level <= g) & (release >= g)
        assert np.unique(plan.slot[live]).size == int(live.sum())


def test_value_plan_chain_needs_few_rows():
    # a chain 1 -> 2 -> ... -> 200 (output 200): two rows suffice (the previous node and the current one)
    n = 200
    ids = np.arange(1, n + 1)
    role = np.full(n, HIDDEN, np.int8)
    role[0], role[-1] = INPUT, OUTPUT
    spec = DagSpec(
        ids, np.zeros(n, np.float32), np.ones(n, np.int8), role, ids[:-1], ids[1:], np.full(n - 1, 1.01, np.float32)
    )
    net = levelise(spec)
    plan = plan_values(net)
    assert plan.n_slots == 2
    engine = CompiledEngine()
    engine.prepare(net)
    x = np.array([[1.0], [2.0]], np.float32)
    np.testing.assert_allclose(engine.infer(x).outputs[:, 0], x[:, 0] * np.float32(1.01) ** 199, rtol=1e-4)
