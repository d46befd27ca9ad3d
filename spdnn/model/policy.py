"""The cuda engine's check-point / compaction / batch policy, simulated on a survival profile.

The rules are the engine's own (spdnn.engines.checkpoints.CheckPolicy, vectorised over policy
classes: arrays of check_every, check_bytes, compact_fraction, batch rows, fuse depth); this
module runs them in one loop over the layers: a check point after a layer when `interval`
layers passed since the last one or the layers since then moved at least check_bytes (always
after the last); compaction when rows died (>= 32 and >= the fraction of present rows, or any
on the last layer); an interval that found nothing to compact doubles up to 8 x check_every;
while check points compact nothing they only peek at the counts (no host round trip; counted
as checks only when they compact). Not modelled: the engine decides a quiet check point on the
previous peek's counts (it compacts one check point later than simulated here when rows die
while check points only peek), saturated rows (carried, not computed), and a batch whose rows
all died (the engine stops it; here it ends at the next check point, compacting if enough
died). A fused dataflow (F layers per launch) can stop only at the end of a launch. Rows of a
batch are a uniform sample of the inputs: a batch of b rows has active[k] * b / inputs rows
after layer k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engines.checkpoints import CheckPolicy
from .network import NetworkProfile


@dataclass
class PolicyResult:
    """Per class: rows per batch, batches, rows present at each layer (C x L), rows alive entering
    each layer (C x L), check points, compactions, rows compacted and rows scanned (per batch)."""

    batch: np.ndarray
    batches: np.ndarray
    present: np.ndarray
    alive_in: np.ndarray
    checks: np.ndarray
    compactions: np.ndarray
    compact_rows: np.ndarray  # sum over compactions of surviving rows x their width (floats moved)
    scan_rows: np.ndarray  # sum over compactions of rows scanned
    points: np.ndarray | None = None  # every check point, peeks included (fused: segments = points)


def auto_batch(prof: NetworkProfile, max_width: np.ndarray, hw_memory: float) -> np.ndarray:
    """Rows per batch the engine chooses without batch_rows (its memory rule, 85% of memory free)."""
    nnz_row = 0.1 * prof.neurons  # generated inputs: ~0.1 N nonzeros per row
    rows = CheckPolicy().rows_that_fit(hw_memory, max_width, nnz_row)
    return np.minimum(rows, np.ceil(prof.inputs / 32) * 32)


def simulate(
    prof: NetworkProfile, wout: np.ndarray, check_every, check_bytes, compact_fraction, batch_rows, fuse
) -> PolicyResult:
    """wout: (C, L) output width per class and layer; the other arguments: (C,) arrays (batch_rows > 0)."""
    ce = np.asarray(check_every, float)
    cb = np.asarray(check_bytes, float)
    cf = np.asarray(compact_fraction, float)
    fz = np.asarray(fuse, np.int64)
    b = np.asarray(batch_rows, float)
    c = np.broadcast(ce, cb, cf, b, fz).shape
    ce, cb, cf, b, fz = (np.broadcast_to(x, c) for x in (ce, cb, cf, b, fz))
    wout = np.broadcast_to(np.asarray(wout, float), c + (prof.layers,))
    policy = CheckPolicy(check_every=ce, check_bytes=cb, compact_fraction=cf)
    nb = np.ceil(prof.inputs / np.maximum(b, 1))
    n0 = prof.inputs / nb  # rows per batch (batches of equal size on average)
    scale = n0 / prof.inputs
    L = prof.layers
    present = np.zeros(c + (L,))
    alive_in = np.zeros(c + (L,))
    nrows = n0.copy()
    interval = ce.copy()
    since = np.zeros(c)
    checks = np.zeros(c)
    comps = np.zeros(c)
    crows = np.zeros(c)
    srows = np.zeros(c)
    done = np.zeros(c, bool)
    quiet = np.zeros(c, bool)
    points = np.zeros(c)  # the last blocking check compacted nothing: check points only peek
    prev_alive = n0.copy()
    for k in range(L):
        act = prof.active[k] * scale
        present[..., k] = np.where(done, 0.0, nrows)
        alive_in[..., k] = np.where(done, 0.0, prev_alive)
        prev_alive = act
        since += 1
        last = k == L - 1
        boundary = ((k + 1) % fz == 0) | last
        check = ~done & boundary & policy.due(since, interval, nrows * wout[..., k] * 4 * since, last)
        since = np.where(check, 0, since)
        died = nrows - act
        compact = check & policy.compacts(died, nrows, last)
        # a host round trip: the first check points, the last, and those that compact (the engine
        # peeks asynchronously while nothing compacts; its one-check lag is not modelled)
        checks += check & (~policy.peeks_first(quiet, last) | compact)
        points += check
        quiet = np.where(check, ~compact, quiet)
        interval = np.where(check, policy.next_interval(interval, compact), interval)
        comps += compact
        crows += np.where(compact, act * wout[..., k], 0.0)
        srows += np.where(compact, nrows, 0.0)
        nrows = np.where(compact, act, nrows)
        done |= check & (act <= 0)
    return PolicyResult(n0, nb, present, alive_in, checks, comps, crows, srows, points)


def segment_length(fuse, points, layers: int):
    """Layers per launch of a fused design: the engine's segments end at check points, whose
    interval doubles while nothing compacts, so they average layers / points (at least fuse)."""
    fuse = np.asarray(fuse, float)
    return np.where(fuse > 1, np.maximum(fuse, layers / np.maximum(np.asarray(points, float), 1.0)), 1.0)
