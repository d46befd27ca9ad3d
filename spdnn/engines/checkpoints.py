"""The cuda engine's check-point policy: when the host looks at the active-row counts, whether it
stops the GPU to do so, when it compacts the rows, and how many rows a batch holds.

One object, CheckPolicy, holds the rules; the engine (spdnn.engines.cuda) follows them per batch
through CheckPoints, and the cost model (spdnn.model.policy) simulates them, vectorised over
policy classes (every rule takes numpy arrays as well as scalars).

* A check point follows a layer when `check_every` layers (the interval) passed since the last
  one, or the layers since then moved at least `check_bytes` of features (a layer that moves
  a lot of features is checked after every layer), and always after the last layer.
* A check point that compacts nothing doubles the interval, up to 8 x check_every; one that
  compacts sets it back to check_every.
* After a check point that compacted nothing ("quiet"), check points only peek: the counts are
  copied back asynchronously and read at the next check point, which stops the GPU (blocks)
  only if that peek saw enough rows gone (worth_stopping). The last layer always blocks.
* A blocking check point compacts when rows left (dead, or saturated and carried: both are
  dropped) and either it is the last layer, or every row left, or at least a tile of 32 rows
  and compact_fraction of the rows left (compacts).
* Batch size: rows per batch from free device memory (two feature buffers at the widest
  layer, flags / positions / ids, two staged input batches), memory_fraction of it, in whole
  tiles of 32 rows; or batch_rows, rounded up to a tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

TILE_ROWS = 32  # rows per tile of the feature layout; the fewest rows worth a compaction
MAX_BACKOFF = 8  # the interval grows to at most MAX_BACKOFF x check_every


def _scalar(*values) -> bool:
    """Whether the rule runs for the engine (Python or numpy scalars) rather than the model (arrays)."""
    return not any(isinstance(v, np.ndarray) for v in values)


@dataclass(frozen=True, eq=False)
class CheckPolicy:
    """The rules, with the engine's defaults. Fields may be arrays (one value per policy class)."""

    check_every: Any = 8
    check_bytes: Any = 64e6
    compact_fraction: Any = 1 / 16
    memory_fraction: Any = 0.85
    batch_rows: int | None = None  # None or 0: from free memory

    # ------------------------------------------------------------------ check points

    def due(self, since, interval, moved, last):
        """Whether a check point follows: `since` layers run since the last one, moving `moved`
        bytes of features; always after the last layer."""
        return last | (since >= interval) | (moved >= self.check_bytes)

    def next_interval(self, interval, compacted):
        """The interval after a check point: back to check_every when it compacted, else doubled
        (up to MAX_BACKOFF x check_every): check points cost a host round trip."""
        if _scalar(interval, compacted, self.check_every):
            return self.check_every if compacted else min(MAX_BACKOFF * self.check_every, 2 * interval)
        return np.where(compacted, self.check_every, np.minimum(MAX_BACKOFF * self.check_every, 2 * interval))

    def peeks_first(self, quiet, last):
        """Whether a check point only peeks unless the evidence says a compaction is due: after a
        quiet check point (one that compacted nothing), except at the last layer."""
        if _scalar(quiet):
            return bool(quiet) and not last
        return np.logical_and(quiet, not last)

    def enough(self, gone, nrows):
        """Whether `gone` of `nrows` rows are enough to compact: a tile and compact_fraction of them."""
        return (gone >= TILE_ROWS) & (gone >= self.compact_fraction * nrows)

    def worth_stopping(self, gone, nrows):
        """Whether a peek that saw `gone` of `nrows` rows gone makes the next check point block:
        every row gone, or enough()."""
        return (gone == nrows) | self.enough(gone, nrows)

    def compacts(self, died, nrows, last, everything=False):
        """At a blocking check point: whether to drop the `died` of `nrows` rows (the dead and the
        carried saturated ones): any on the last layer, all of them (`everything`), or enough().
        (died > 0.5: at least one row; the model's rows per batch are expected values.)"""
        return (died > 0.5) & (last | everything | self.enough(died, nrows))

    # ------------------------------------------------------------------ batch size

    def row_bytes(self, max_width, nnz_per_row):
        """Device bytes per row of a batch: two feature buffers at the widest layer, flags /
        positions / ids (6 x 4 B), two staged input batches (COO, 12 B per nonzero, 25% slack)."""
        return 2 * max_width * 4 + 6 * 4 + 2 * 12 * nnz_per_row * 1.25

    def rows_that_fit(self, free_bytes, max_width, nnz_per_row):
        """Rows (whole tiles) that memory_fraction of free_bytes holds."""
        per_row = self.row_bytes(max_width, nnz_per_row)
        return np.floor(self.memory_fraction * free_bytes / per_row / TILE_ROWS) * TILE_ROWS

    def batch(self, n_inputs: int, max_width: int, nnz_per_row: float, free_bytes: Callable[[], int]) -> int:
        """The engine's rows per batch: batch_rows rounded up to a tile, or rows_that_fit the
        free device memory (free_bytes(), asked only then), at most the inputs in whole tiles.
        MemoryError when not even one tile fits."""
        if self.batch_rows:
            return max(TILE_ROWS, (int(self.batch_rows) + TILE_ROWS - 1) // TILE_ROWS * TILE_ROWS)
        free = free_bytes()
        rows = int(self.rows_that_fit(free, max_width, nnz_per_row))
        if rows < TILE_ROWS:
            raise MemoryError(
                f"GPU memory too small: {free} bytes free, {self.row_bytes(max_width, nnz_per_row):.0f} per row"
            )
        return min(rows, (n_inputs + TILE_ROWS - 1) // TILE_ROWS * TILE_ROWS)


@dataclass(frozen=True)
class Decision:
    """What a check point decided. block: the GPU stopped for the counts (else it peeked);
    compact: the rows left are dropped; carry: saturated rows among them (carried to the end);
    rows: the rows the batch holds afterwards (0: the batch is done)."""

    block: bool
    compact: bool = False
    carry: int = 0
    rows: int = 0


PEEK = Decision(block=False)


class CheckPoints:
    """One batch's check points under a policy, in the engine's order (scalars).

    The runner calls due() after every launch (a layer, or a fused segment of `layers`) and,
    when it says so, check_point(); room() bounds a fused segment so that it ends at the next
    check point.
    """

    def __init__(self, policy: CheckPolicy):
        self.policy = policy
        self.interval = policy.check_every
        self.since = 0  # layers run since the last check point
        self.quiet = False  # the last blocking check point compacted nothing
        self.peeked_at: int | None = None  # the layer whose counts the last peek copied (None: no peek pending)

    def room(self) -> int:
        """Layers that may still run before a check point is due (the interval's rest)."""
        return self.interval - self.since

    def due(self, layers: int, layer_bytes: int, last: bool) -> bool:
        """After a launch of `layers` layers, each moving `layer_bytes` of features (0 for fused
        layers: their features stay on chip): whether a check point follows now."""
        self.since += layers
        if not self.policy.due(self.since, self.interval, layer_bytes * self.since, last):
            return False
        self.since = 0
        return True

    def check_point(
        self,
        k: int,
        last: bool,
        nrows: int,
        peeked: Callable[[int], tuple[int, int]],
        counts: Callable[[int], tuple[int, int]],
    ) -> Decision:
        """The check point after layer k of a batch holding `nrows` rows.

        peeked(j): (active, saturated) after layer j as the pending peek copied them (called only
        after a quiet check point, to decide whether to block); counts(k): (active, saturated)
        after layer k, read now, stopping the GPU (called only when the check point blocks).
        Saturated rows are counted only where they are carried (0 elsewhere).
        """
        p = self.policy
        if p.peeks_first(self.quiet, last) and not (
            self.peeked_at is not None and p.worth_stopping(self._gone(nrows, peeked(self.peeked_at)), nrows)
        ):
            self.peeked_at = k
            self.interval = p.next_interval(self.interval, False)
            return PEEK
        active, saturated = counts(k)
        if active == 0:
            return Decision(block=True, rows=0)
        died = self._gone(nrows, (active, saturated))  # rows to drop: the dead and the saturated
        compact = bool(p.compacts(died, nrows, last, died == nrows))
        carry = saturated if compact else 0
        rows = active - carry if compact else nrows
        if rows:
            self.interval = p.next_interval(self.interval, compact)
            self.quiet, self.peeked_at = not compact, None
        return Decision(block=True, compact=compact, carry=carry, rows=rows)

    @staticmethod
    def _gone(nrows: int, counts: tuple[int, int]) -> int:
        active, saturated = counts
        return nrows - active + saturated
