"""The check-point policy (spdnn.engines.checkpoints) on the CPU: its rules on hand-computed cases,
the engine's decision sequence (CheckPoints driven as CudaEngine drives it) on simulated survival
curves, and that sequence against what the cost model (spdnn.model.policy) predicts."""

from __future__ import annotations

import numpy as np
import pytest

from spdnn.engines.checkpoints import PEEK, CheckPoints, CheckPolicy, Decision
from spdnn.model.network import NetworkProfile, layer_shapes
from spdnn.model.policy import auto_batch, simulate

NEVER = 1e18  # check_bytes that no layer reaches


def replay(policy: CheckPolicy, alive, wout, nrows: int, saturated=None, fused=None, carry_from=None):
    """One batch of `nrows` rows through the engine's check points, on a survival curve.

    alive[k]: the batch's rows alive after layer k (carried rows included); saturated[k]: how many
    of them are saturated (counted where carried: carry_from <= k + 1 < L); fused[k]: layer k runs
    in fused segments. The calls are CudaEngine._batch_layers' and _check_point's, in their order:
    a launch (a layer, or fused layers up to room()), due(), then check_point() with the counts
    among the rows still held (the carried ones left). Returns the check points as (layer, what
    [, rows carried]) with what in peek / block / compact / end, and the rows held entering each layer.
    """
    n_layers = len(alive)
    saturated = [0] * n_layers if saturated is None else saturated
    fused = [False] * n_layers if fused is None else fused
    carry_from = n_layers if carry_from is None else carry_from
    checks, carried, events, present = CheckPoints(policy), 0, [], []
    k0 = 0
    while k0 < n_layers:
        k1 = k0 + 1
        if fused[k0]:
            room = checks.room()
            while k1 < n_layers and k1 - k0 < room and fused[k1]:
                k1 += 1
        present += [nrows] * (k1 - k0)
        k, last = k1 - 1, k1 == n_layers
        if checks.due(k1 - k0, 0 if fused[k] else nrows * wout[k] * 4, last):

            def counts(j):
                return alive[j] - carried, (saturated[j] - carried if carry_from <= j + 1 < n_layers else 0)

            d = checks.check_point(k, last, nrows, peeked=counts, counts=counts)
            what = "peek" if not d.block else "end" if d.rows == 0 else "compact" if d.compact else "block"
            events.append((k, what) + ((d.carry,) if d.carry else ()))
            carried += d.carry
            if what == "end":
                break
            if d.compact:
                nrows = d.rows
        k0 = k1
    return events, present


def model(policy: CheckPolicy, alive, wout, nrows: int):
    """simulate() of one batch of `nrows` rows (a kernel per layer)."""
    prof = NetworkProfile.from_active(64, alive, nrows)
    return simulate(
        prof,
        np.asarray(wout, float)[None, :],
        [policy.check_every],
        [policy.check_bytes],
        [policy.compact_fraction],
        [nrows],
        [1],
    )


# ----------------------------------------------------------------------------- the rules


def test_rules_by_hand():
    p = CheckPolicy(check_every=4, check_bytes=1000, compact_fraction=1 / 16)
    assert p.due(4, 4, 0, False) and not p.due(3, 4, 999, False)
    assert p.due(1, 4, 1000, False) and p.due(1, 4, 0, True)  # the bytes moved; the last layer
    assert p.next_interval(4, True) == 4 and p.next_interval(4, False) == 8
    assert p.next_interval(16, False) == 32 and p.next_interval(32, False) == 32  # at most 8 x check_every
    # enough: at least a tile (32 rows) and 1/16 of the rows
    assert p.enough(40, 640) and not p.enough(39, 640) and not p.enough(31, 320)
    assert p.compacts(31, 320, True) and not p.compacts(31, 320, False) and not p.compacts(0, 320, True)
    assert p.compacts(20, 20, False, everything=True)  # every row left (all of them carried), fewer than a tile
    assert p.worth_stopping(20, 20) and p.worth_stopping(40, 640) and not p.worth_stopping(31, 640)
    assert p.peeks_first(True, False) and not p.peeks_first(True, True) and not p.peeks_first(False, False)


def test_rules_vectorised_equal_scalar():
    """The model calls the rules with arrays (one value per policy class): same answers."""
    rng = np.random.default_rng(2)
    ce, cb, cf = rng.choice([1, 3, 8], 50), rng.choice([1e3, 1e6], 50), rng.choice([0.0, 1 / 16, 0.5], 50)
    since, interval, moved = rng.integers(0, 20, 50), rng.integers(1, 20, 50), rng.integers(0, 2_000_000, 50)
    died, nrows = rng.integers(0, 100, 50), rng.integers(100, 800, 50)
    compacted, quiet = rng.random(50) < 0.5, rng.random(50) < 0.5
    vec = CheckPolicy(check_every=ce, check_bytes=cb, compact_fraction=cf)
    for last in (False, True):
        due, comp = vec.due(since, interval, moved, last), vec.compacts(died, nrows, last)
        nxt, peeks = vec.next_interval(interval, compacted), vec.peeks_first(quiet, last)
        for i in range(50):
            one = CheckPolicy(check_every=int(ce[i]), check_bytes=float(cb[i]), compact_fraction=float(cf[i]))
            assert due[i] == one.due(int(since[i]), int(interval[i]), int(moved[i]), last)
            assert comp[i] == one.compacts(int(died[i]), int(nrows[i]), last)
            assert nxt[i] == one.next_interval(int(interval[i]), bool(compacted[i]))
            assert peeks[i] == one.peeks_first(bool(quiet[i]), last)


def test_batch_size_by_hand():
    assert CheckPolicy(batch_rows=100).batch(10, 64, 10.0, free_bytes=lambda: 1 / 0) == 128  # memory not asked
    assert CheckPolicy(batch_rows=1).batch(10, 64, 10.0, free_bytes=lambda: 1 / 0) == 32
    p = CheckPolicy()
    # 2 x 64 x 4 + 24 + 2 x 12 x 10 x 1.25 = 836 B per row; 0.85 MB / 836 = 1016.7 rows -> 31 tiles
    assert p.row_bytes(64, 10.0) == 836
    assert p.batch(5000, 64, 10.0, free_bytes=lambda: 1_000_000) == 992
    assert p.batch(500, 64, 10.0, free_bytes=lambda: 1_000_000) == 512  # all the inputs, in whole tiles
    with pytest.raises(MemoryError, match="GPU memory too small: 20000 bytes free, 836 per row"):
        p.batch(500, 64, 10.0, free_bytes=lambda: 20_000)


def test_model_batch_is_the_engines():
    """The model's batch without batch_rows is the engine's rule, at the model's ~0.1 N nonzeros per row."""
    for n, width in ((1024, 1024), (4096, 256), (65536, 65536)):
        prof = NetworkProfile.stored(n, 120)
        engine = CheckPolicy().batch(prof.inputs, width, 0.1 * n, free_bytes=lambda: 80e9)
        assert engine == auto_batch(prof, np.array([float(width)]), 80e9)[0]


# ----------------------------------------------------------------------------- the engine's decisions


def test_check_points_by_hand():
    """check_every 2, 640 rows (20 tiles), nothing moves check_bytes.
    k=1: 140 died >= 40 (1/16): compact to 500. k=3: 30 died < 32: block, nothing, interval 4, quiet.
    k=7: quiet, no peek yet: peek, interval 8. k=11: the last layer blocks; 101 died: compact."""
    alive = [600, 500, 480, 470, 470, 470, 470, 470, 400, 400, 400, 399]
    p = CheckPolicy(check_every=2, check_bytes=NEVER)
    events, present = replay(p, alive, [64] * 12, 640)
    assert events == [(1, "compact"), (3, "block"), (7, "peek"), (11, "compact")]
    assert present == [640, 640] + [500] * 10
    r = model(p, alive, [64] * 12, 640)  # nothing dies while check points only peek: the model agrees
    assert (r.points[0], r.checks[0], r.compactions[0]) == (4, 3, 2)
    assert r.present[0].tolist() == present


def test_peek_decides_the_next_check_point():
    """check_every 1, 640 rows. k=0: 40 died: compact to 600. k=1: nothing: quiet, interval 2.
    k=3: peek (500 alive then), interval 4. k=7: the peek saw 100 of 600 gone (>= 37.5): block;
    490 alive now: compact. k=8: nothing, k=9 (last): nothing. The model follows the peek's lag
    (since 2026-12-03: it compacted at k=3 before, on the current counts)."""
    alive = [600, 600, 600, 500, 500, 500, 500, 490, 490, 490]
    p = CheckPolicy(check_every=1, check_bytes=NEVER)
    events, present = replay(p, alive, [64] * 10, 640)
    assert events == [(0, "compact"), (1, "block"), (3, "peek"), (7, "compact"), (8, "block"), (9, "block")]
    assert present == [640] + [600] * 7 + [490] * 2
    r = model(p, alive, [64] * 10, 640)
    assert r.present[0].tolist() == present  # compacted after layer 7, as the engine
    compactions = sum(what == "compact" for _, what in events)
    blocking = sum(what != "peek" for _, what in events)
    assert (r.compactions[0], r.checks[0], r.points[0]) == (compactions, blocking, len(events))


def test_check_bytes_checks_every_layer():
    """320 rows of 64 features move 81920 B per layer: with check_bytes 80000, every layer checks."""
    p = CheckPolicy(check_every=8, check_bytes=80_000)
    events, _ = replay(p, [320] * 5, [64] * 5, 320)
    assert [k for k, *_ in events] == [0, 1, 2, 3, 4]
    assert [what for _, what, *_ in events] == ["block", "peek", "peek", "peek", "block"]


def test_fused_segments_end_at_check_points():
    """Fused layers run to the next check point: check_every 3 gives segments 0..2, then (the
    interval doubled) 3..8, then the last layer; they move no features, so bytes never check."""
    launches = []

    class Watch(CheckPoints):
        def due(self, layers, layer_bytes, last):
            launches.append((layers, layer_bytes))
            return super().due(layers, layer_bytes, last)

    checks = Watch(CheckPolicy(check_every=3, check_bytes=1))
    k0, decisions = 0, []
    while k0 < 10:
        k1 = k0 + 1
        while k1 < 10 and k1 - k0 < checks.room():
            k1 += 1
        if checks.due(k1 - k0, 0, k1 == 10):
            decisions.append(
                checks.check_point(k1 - 1, k1 == 10, 320, peeked=lambda j: (320, 0), counts=lambda j: (320, 0))
            )
        k0 = k1
    assert launches == [(3, 0), (6, 0), (1, 0)]
    assert decisions == [Decision(block=True, rows=320), PEEK, Decision(block=True, rows=320)]


def test_saturated_rows_are_carried_by_hand():
    """640 rows, all alive; 320 saturated after layer 1, all after layer 3 (carried from layer 0).
    k=1: 320 to drop (saturated): compact, carrying them. k=3: the 320 left are all saturated:
    everything goes (carried), the batch ends."""
    p = CheckPolicy(check_every=2, check_bytes=NEVER)
    events, _ = replay(p, [640] * 6, [64] * 6, 640, saturated=[0, 320, 320, 640, 640, 640], carry_from=0)
    assert events == [(1, "compact", 320), (3, "end", 320)]


def test_fewer_than_a_tile_all_saturated_are_carried():
    """20 rows: 10 die, the other 10 saturate: 20 of 20 to drop, fewer than a tile but every row:
    dropped (the dead) and carried (the saturated); the batch ends."""
    p = CheckPolicy(check_every=2, check_bytes=NEVER)
    events, _ = replay(p, [20, 10, 10, 10], [64] * 4, 20, saturated=[0, 10, 10, 10], carry_from=0)
    assert events == [(1, "end", 10)]


def test_rows_all_dead_end_the_batch():
    checks = CheckPoints(CheckPolicy(check_every=1))
    assert checks.due(1, 0, False)
    d = checks.check_point(0, False, 640, peeked=lambda j: 1 / 0, counts=lambda j: (0, 0))
    assert d == Decision(block=True, compact=False, carry=0, rows=0)


def test_peek_counts_read_only_when_deciding():
    """The runner waits for a peek's copy only at a quiet check point that is not the last, and
    reads the counts (stopping the GPU) only when the check point blocks. check_every 1, nothing
    dies: k=0 blocks (interval 2, quiet); k=2 peeks (no peek pending: nothing read; interval 4);
    k=6 reads the peek of k=2 and peeks again; k=7, the last, blocks."""
    asked = []
    checks = CheckPoints(CheckPolicy(check_every=1, check_bytes=NEVER))

    def layer(k, last=False):
        if checks.due(1, 0, last):
            return checks.check_point(
                k,
                last,
                640,
                peeked=lambda j: asked.append(("peeked", j)) or (640, 0),
                counts=lambda j: asked.append(("counts", j)) or (640, 0),
            )
        return None

    decisions = [layer(k) for k in range(7)] + [layer(7, last=True)]
    block = Decision(block=True, rows=640)
    assert decisions == [block, None, PEEK, None, None, None, PEEK, block]
    assert asked == [("counts", 0), ("peeked", 2), ("counts", 7)]


# ----------------------------------------------------------------------------- engine == model


@pytest.mark.parametrize("neurons", [1024, 4096, 16384, 65536])
@pytest.mark.parametrize("variant", ["merged", "dedup"])
@pytest.mark.parametrize("check_every,check_bytes", [(8, 64e6), (1, 64e6), (3, 1e9), (2, 16e6)])
def test_engine_decisions_against_the_model_on_stored_profiles(neurons, variant, check_every, check_bytes):
    """The engine's check points on the measured survival profiles (one batch of 60000 rows, a
    kernel per layer) against the model's prediction. Equal (every check point, the blocking
    ones, the compactions, the rows held entering every layer) until the model compacts at a
    check point where the engine only peeks; the engine, which decides on that peek's counts,
    then compacts at its next check point (the lag the model does not model). On the default
    policy below N = 65536 rows die only while check points still block: equal throughout."""
    prof = NetworkProfile.stored(neurons, 120, profile_set="measured")
    alive = [int(a) for a in prof.active]
    wout = layer_shapes(neurons, 120, variant).wout.tolist()
    p = CheckPolicy(check_every=check_every, check_bytes=check_bytes)
    events, present = replay(p, alive, wout, prof.inputs)
    r = model(p, alive, wout, prof.inputs)
    predicted = r.present[0].tolist()
    if (check_every, check_bytes) == (8, 64e6) and neurons < 65536:
        assert predicted == present
    if predicted == present:
        assert r.points[0] == len(events)
        assert r.checks[0] == sum(what != "peek" for _, what, *_ in events)
        assert r.compactions[0] == sum(what == "compact" for _, what, *_ in events)
        return
    k = next(j for j in range(len(present)) if present[j] != predicted[j]) - 1  # the model compacted after layer k
    assert predicted[k + 1] < predicted[k] and present[k + 1] == present[k]
    at = next(i for i, (j, *_) in enumerate(events) if j >= k)
    assert events[at][:2] == (k, "peek") and events[at + 1][1] == "compact"
    assert present[: k + 1] == predicted[: k + 1]


def test_engine_decisions_reproduce_the_measured_counts():
    """The H100 run of 4096 x 120 (benchmarks/results/gpu-2026-11-25-peeks.json, default policy,
    a kernel per layer): 6 blocking check points and 4 compactions merged, 12 and 11 dedup."""
    prof = NetworkProfile.stored(4096, 120)
    for variant, checks, comps in (("merged", 6, 4), ("dedup", 12, 11)):
        events, _ = replay(
            CheckPolicy(), [int(a) for a in prof.active], layer_shapes(4096, 120, variant).wout.tolist(), 60000
        )
        assert sum(what != "peek" for _, what, *_ in events) == checks
        assert sum(what == "compact" for _, what, *_ in events) == comps
