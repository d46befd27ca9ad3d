"""Near-ring tables of the population kernel (spdnn.dag.population_ring, issue 19): every near read
is safe under a barrier per group, every far read finds its row stored, and the population run
through the tables with the kernel's semantics gives the sequential engine's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.dag.population import blocked, population, run_blocked_cpu
from spdnn.dag.population_ring import group_bounds, reader_groups, ring_tables, run_ring_cpu
from spdnn.dag.shapes import neat


@pytest.fixture(scope="module")
def pop():
    return blocked(population([neat(1500, seed=k, n_inputs=16, n_outputs=4) for k in range(5)]))


def test_reader_groups_end_each_readers_group(pop):
    ends = reader_groups(pop)
    rows = np.repeat(np.arange(pop.n_rows), np.diff(pop.indptr))
    assert np.all(ends > rows)
    bounds = set(pop.level_ptr.tolist())
    assert set(np.unique(ends).tolist()) <= bounds
    # the end is the first boundary above the reader: no boundary lies in between
    b = np.unique(pop.level_ptr)
    assert np.all(b[np.searchsorted(b, rows, side="right")] == ends)


@pytest.mark.parametrize("ring", [0, 4, 16, 64, 1 << 20])
def test_near_reads_are_never_overwritten_before_them(pop, ring):
    t = ring_tables(pop, ring)
    src = pop.sources.astype(np.int64)
    near = t.codes < 0
    assert np.all(src[near] >= pop.n_inputs)  # the shared inputs are always global
    assert np.all(-t.codes[near] - 1 == src[near] % max(ring, 1))
    # the next row to take a near source's slot is written after its reader's group ends, and no
    # earlier row of the source's own group shares the slot
    assert np.all(src[near] + ring >= reader_groups(pop)[near])
    assert np.all(src[near] - ring < group_bounds(pop, src[near])[0])
    # every far source and every output is stored
    assert np.all(t.stored[src[~near]])
    assert np.all(t.stored[pop.output_rows])
    if ring == 0:
        assert not near.any()
    if ring == 1 << 20:
        assert near.sum() == (src >= pop.n_inputs).sum()


@pytest.mark.parametrize("ring", [0, 8, 32, 1 << 20])
def test_ring_run_equals_the_sequential_engine(pop, ring):
    x = np.random.default_rng(3).standard_normal((7, pop.n_inputs)).astype(np.float32)
    got = run_ring_cpu(pop, ring_tables(pop, ring), x)
    want = run_blocked_cpu(pop, x)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_tables_without_the_group_condition_read_overwritten_slots(pop):
    """Every member source near in a ring of 8 rows, whatever its distance: reads of slots that
    later rows took give other outputs, so the condition is needed and the run shows its absence."""
    from spdnn.dag.population_ring import RingTables

    x = np.random.default_rng(4).standard_normal((3, pop.n_inputs)).astype(np.float32)
    src = pop.sources.astype(np.int64)
    member = src >= pop.n_inputs
    codes = np.where(member, -(src % 8) - 1, src).astype(np.int32)
    stored = np.zeros(pop.n_rows, bool)
    stored[: pop.n_inputs] = True
    stored[pop.output_rows] = True
    got = run_ring_cpu(pop, RingTables(codes, stored, 8), x)
    assert np.isnan(got).any() or not np.allclose(got, run_blocked_cpu(pop, x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="beyond"):
        run_ring_cpu(pop, RingTables(codes, stored, 4), x)


def test_group_bounds_hold_their_rows(pop):
    rows = np.arange(pop.n_inputs, pop.n_rows)
    start, end = group_bounds(pop, rows)
    assert np.all(start <= rows) and np.all(rows < end)
    assert set(np.unique(start).tolist()) <= set(pop.level_ptr.tolist())


def test_rows_of_one_group_sharing_a_slot_are_never_near(pop):
    """A ring smaller than the widest group: two of its rows write one slot in the same step, so
    neither is read from the ring, and the run (which marks such slots unknown) still matches."""
    widest = int(np.diff(np.unique(pop.level_ptr)).max())
    ring = max(2, widest // 2)
    t = ring_tables(pop, ring)
    x = np.random.default_rng(5).standard_normal((4, pop.n_inputs)).astype(np.float32)
    got = run_ring_cpu(pop, t, x)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, run_blocked_cpu(pop, x), rtol=2e-5, atol=2e-6)
    # without the own-group rule some near reads would hit a clashing slot
    src = pop.sources.astype(np.int64)
    clashing = (src >= pop.n_inputs) & (src + ring >= reader_groups(pop)) & (src - ring >= group_bounds(pop, src)[0])
    assert clashing.any()
    from spdnn.dag.population_ring import RingTables

    loose = (src >= pop.n_inputs) & (src + ring >= reader_groups(pop))
    stored = t.stored.copy()
    bad = RingTables(np.where(loose, -(src % ring) - 1, src).astype(np.int32), stored, ring)
    assert np.isnan(run_ring_cpu(pop, bad, x)).any()  # the race shows


def test_bigger_rings_serve_more_reads(pop):
    shares = [ring_tables(pop, k).near_share for k in (0, 8, 64, 512)]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] > 0.0
    stored = [int(ring_tables(pop, k).stored.sum()) for k in (0, 8, 64, 512)]
    assert stored == sorted(stored, reverse=True)


def test_negative_ring_is_an_error(pop):
    with pytest.raises(ValueError, match="ring_rows"):
        ring_tables(pop, -1)
