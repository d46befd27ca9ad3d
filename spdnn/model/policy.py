"""The cuda engine's check-point / compaction / batch policy, simulated on a survival profile.

The rules are the engine's own (spdnn.engines.checkpoints.CheckPolicy, vectorised over policy
classes: arrays of check_every, check_bytes, compact_fraction, batch rows, fuse depth, carry);
this module runs them in one loop over the layers: a check point after a layer when `interval`
layers passed since the last one or the layers since then moved at least check_bytes (always
after the last); compaction when rows left (>= 32 and >= the fraction of present rows, every row
left, or any on the last layer); an interval that found nothing to compact doubles up to 8 x
check_every; while check points compact nothing they only peek at the counts (no host round
trip; counted as checks only when they block).

Carried rows (carry_saturated, the engine's default): from the layer the plan says
(NetworkProfile.carry_from, the engine's carry_start), check points count the saturated rows
(one spdnn_saturated launch each, peeks included) and a compaction drops them with the dead ones
(the engine's CheckPoints.check_point: rows left = dead + saturated); they are carried to the end
without being computed, and a batch whose rows left are all saturated (or dead) ends there.
The profile's saturated counts (NetworkProfile.saturated) say how many; without them nothing is
carried. Peeks lag as in the engine (CheckPoints.check_point): after a quiet check point the next
one only peeks (copies the counts back), and a later one blocks only if the pending peek saw
enough rows gone (worth_stopping), so rows that die or saturate while check points only peek are
compacted one check point after the one that first sees them (a batch whose rows all died, too).
A fused dataflow (F layers per launch) can stop only at the end of a launch. Rows of a batch are
a uniform sample of the inputs: a batch of b rows has active[k] * b / inputs rows after layer k,
saturated[k] * b / inputs of them saturated.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    # carried rows (0 without carry): launches of spdnn_saturated and of the drops' scan and
    # compaction of the carried indices; floats those saturated launches read; drops (a scan of
    # the rows present each) and the rows they scanned; rows carried per batch at the end
    carry_launches: np.ndarray | float = 0.0
    carry_floats: np.ndarray | float = 0.0
    drops: np.ndarray | float = 0.0
    drop_rows: np.ndarray | float = 0.0
    carried: np.ndarray | float = 0.0

    @property
    def layers_run(self) -> np.ndarray:
        """Per class, the layers a batch runs (rows present), up to where it ends."""
        return np.count_nonzero(self.present > 0, axis=-1)

    def classes(self, index) -> PolicyResult:
        """The classes `index` selects (an int: one class, as the scalar model uses it), every field alike."""
        return PolicyResult(
            **{
                f.name: v if (v := getattr(self, f.name)) is None or np.ndim(v) == 0 else np.asarray(v)[index]
                for f in fields(self)
            }
        )


def auto_batch(prof: NetworkProfile, max_width: np.ndarray, hw_memory: float) -> np.ndarray:
    """Rows per batch the engine chooses without batch_rows (its memory rule, 85% of memory free)."""
    nnz_row = 0.1 * prof.neurons  # generated inputs: ~0.1 N nonzeros per row
    rows = CheckPolicy().rows_that_fit(hw_memory, max_width, nnz_row)
    return np.minimum(rows, np.ceil(prof.inputs / 32) * 32)


def simulate(
    prof: NetworkProfile,
    wout: np.ndarray,
    check_every,
    check_bytes,
    compact_fraction,
    batch_rows,
    fuse,
    carry=True,
) -> PolicyResult:
    """wout: (C, L) output width per class and layer; the other arguments: (C,) arrays (batch_rows > 0);
    carry: the engine's carry_saturated per class (saturated rows dropped and carried, from the
    layer prof.carry_from; nothing to carry where the profile has no saturated counts)."""
    ce = np.asarray(check_every, float)
    cb = np.asarray(check_bytes, float)
    cf = np.asarray(compact_fraction, float)
    fz = np.asarray(fuse, np.int64)
    b = np.asarray(batch_rows, float)
    cs = np.asarray(carry, bool)
    c = np.broadcast(ce, cb, cf, b, fz, cs).shape
    ce, cb, cf, b, fz, cs = (np.broadcast_to(x, c) for x in (ce, cb, cf, b, fz, cs))
    wout = np.broadcast_to(np.asarray(wout, float), c + (prof.layers,))
    policy = CheckPolicy(check_every=ce, check_bytes=cb, compact_fraction=cf)
    nb = np.ceil(prof.inputs / np.maximum(b, 1))
    n0 = prof.inputs / nb  # rows per batch (batches of equal size on average)
    scale = n0 / prof.inputs
    L = prof.layers
    saturated = prof.saturated if prof.saturated is not None else np.zeros(L)
    start = prof.carry_from
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
    pending = np.zeros(c, bool)  # a peek's counts are pending (copied back, not yet read)
    peek_died = np.zeros(c)  # rows gone at the pending peek (dead and saturated)
    carried = np.zeros(c)  # rows of a batch carried (dropped saturated) so far
    c_launch = np.zeros(c)
    c_floats = np.zeros(c)
    drops = np.zeros(c)
    drop_rows = np.zeros(c)
    prev_alive = n0.copy()
    for k in range(L):
        act = prof.active[k] * scale
        held = act - carried  # the alive rows the batch still holds (the carried ones left)
        # the engine counts saturated rows at the check points after layers carry_from - 1 .. L - 2
        carrying = cs & (start <= k + 1 < L)
        sat = np.where(carrying, np.maximum(saturated[k] * scale - carried, 0.0), 0.0)
        rest = held - sat  # the rows a compaction keeps
        present[..., k] = np.where(done, 0.0, nrows)
        alive_in[..., k] = np.where(done, 0.0, prev_alive)
        since += 1
        last = k == L - 1
        boundary = ((k + 1) % fz == 0) | last
        check = ~done & boundary & policy.due(since, interval, nrows * wout[..., k] * 4 * since, last)
        since = np.where(check, 0, since)
        died = nrows - rest  # rows left: the dead and the saturated
        # after a quiet check point a check point only peeks, unless the pending peek (the counts
        # copied back at the previous check point) saw enough rows gone: then it blocks
        stop = pending & policy.worth_stopping(peek_died, nrows)
        block = check & (~policy.peeks_first(quiet, last) | stop)
        compact = block & policy.compacts(died, nrows, last, (held > 0) & (rest <= 0))
        drop = compact & (sat > 0)  # the saturated rows are marked, their indices kept, then compacted
        ends = drop & (rest <= 0)  # nothing left to compact: the batch ends at the drop
        peek = check & ~block
        pending = np.where(peek, True, np.where(block, False, pending))
        peek_died = np.where(peek, died, peek_died)
        checks += block  # a host round trip: the check points that block
        points += check
        quiet = np.where(block, ~compact, quiet)
        interval = np.where(check, policy.next_interval(interval, compact), interval)
        comps += compact & ~ends
        crows += np.where(compact & ~ends, rest * wout[..., k], 0.0)
        srows += np.where(compact & ~ends, nrows, 0.0)
        # spdnn_saturated counts at every such check point (peeks too); a drop marks (again), scans
        # and compacts the carried indices: 3 launches, the features read once more
        c_launch += np.where(check & carrying, 1.0, 0.0) + np.where(drop, 3.0, 0.0)
        c_floats += np.where(check & carrying, nrows * wout[..., k], 0.0) + np.where(drop, nrows * wout[..., k], 0.0)
        drops += drop
        drop_rows += np.where(drop, nrows, 0.0)
        carried = np.where(drop, carried + sat, carried)
        nrows = np.where(compact, rest, nrows)
        prev_alive = act - carried
        done |= block & ((held <= 0) | ends)  # a peek does not stop the batch: its rows run on
    return PolicyResult(
        n0, nb, present, alive_in, checks, comps, crows, srows, points, c_launch, c_floats, drops, drop_rows, carried
    )


def segment_length(fuse, points, layers):
    """Layers per launch of a fused design: the engine's segments end at check points, whose
    interval doubles while nothing compacts, so they average layers / points (at least fuse);
    `layers`: the layers a batch runs (PolicyResult.layers_run: fewer than the network's when its
    rows all die or are carried early)."""
    fuse = np.asarray(fuse, float)
    return np.where(
        fuse > 1, np.maximum(fuse, np.asarray(layers, float) / np.maximum(np.asarray(points, float), 1.0)), 1.0
    )
