"""Deduplication by sequence number: a frame delivered twice is counted once.

Connectors number readings 1, 2, ... per (source, epoch) without gaps, so "seen" is a
floor (every seq at or below it is done) plus a few ranges above it that arrived out of
order. Ranges more than ``tolerance`` below the highest seq seen are folded into the
floor: a reading that old is taken as already processed. Per source the newest
``max_epochs`` epochs are kept; a reading of an older epoch is ignored as stale.

Lifecycle: ``SeqDedup(tolerance)``; ``fresh(source, epoch, seq)`` (or ``fresh_run`` for a
frame's contiguous numbers) per frame returns which readings are new and records them;
counters ``duplicates`` and ``stale``; ``snapshot``/``restore``/``drop`` per source, for
state persistence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Seen", "SeqDedup"]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Seen:
    """The sequence numbers of one (source, epoch) already processed."""

    floor: int = 0
    ranges: list[list[int]] = field(default_factory=list)  # [lo, hi] above floor, sorted

    def fresh(self, seq: I64) -> npt.NDArray[np.bool_]:
        new = seq > self.floor
        for lo, hi in self.ranges:
            new &= (seq < lo) | (seq > hi)
        return new

    def record(self, seq: I64, tolerance: int) -> None:
        """Mark ``seq`` (all fresh, any order) seen and tidy the ranges."""
        if not len(seq):
            return
        s = np.sort(seq)
        cut = np.flatnonzero(np.diff(s) != 1) + 1
        runs = [[int(r[0]), int(r[-1])] for r in np.split(s, cut)]
        merged: list[list[int]] = []
        for lo, hi in sorted(self.ranges + runs):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        top = merged[-1][1]
        floor = max(self.floor, top - tolerance)
        kept: list[list[int]] = []
        for lo, hi in merged:
            if hi <= floor:
                continue
            if lo <= floor + 1:
                floor = hi  # contiguous with the floor: fold it in
            else:
                kept.append([max(lo, floor + 1), hi])
        self.floor, self.ranges = floor, [r for r in kept if r[1] > floor]


class SeqDedup:
    """Which readings of a frame were already processed, per (source, epoch)."""

    def __init__(self, tolerance: int = 100_000, max_epochs: int = 8) -> None:
        self.tolerance = tolerance
        self.max_epochs = max_epochs
        self._seen: dict[str, dict[int, Seen]] = {}
        self.duplicates = 0
        self.stale = 0

    def fresh(self, source: str, epoch: int, seq: I64) -> tuple[npt.NDArray[np.bool_], str]:
        """A mask of the readings not seen before (now recorded as seen), and the reason
        the others were ignored ("" if none were)."""
        epochs = self._seen.setdefault(source, {})
        seen = epochs.get(epoch)
        if seen is None:
            if len(epochs) >= self.max_epochs and epoch < min(epochs):
                self.stale += len(seq)
                return np.zeros(len(seq), bool), (
                    f"stale-epoch: epoch {epoch} of {source} is older than the "
                    f"{self.max_epochs} newest epochs seen")
            seen = epochs[epoch] = Seen()
            if len(epochs) > self.max_epochs:
                del epochs[min(epochs)]
        new = seen.fresh(seq)
        seen.record(seq[new], self.tolerance)
        n_dup = len(seq) - int(np.count_nonzero(new))
        if not n_dup:
            return new, ""
        self.duplicates += n_dup
        return new, (f"duplicate-seq: {n_dup} readings of {source} epoch {epoch} with "
                     f"sequence numbers already processed (at or below {seen.floor}, or "
                     "seen in an earlier frame)")

    def fresh_run(self, source: str, epoch: int, first: int,
                  n: int) -> tuple[npt.NDArray[np.bool_], str]:
        """:meth:`fresh` for the sequence numbers ``first .. first + n - 1`` (a frame's):
        the next run after everything seen costs no array work at all."""
        seen = self._seen.get(source, {}).get(epoch)
        if seen is not None and not seen.ranges and first == seen.floor + 1 and n > 0:
            seen.floor = first + n - 1
            return np.ones(n, bool), ""
        return self.fresh(source, epoch, np.arange(first, first + n, dtype=np.int64))

    def snapshot(self, sources: Iterable[str] | None = None) -> dict[str, Any]:
        """What was seen, per source (of ``sources``, or all), as plain data."""
        keep = None if sources is None else set(sources)
        return {src: {str(e): [s.floor, [list(r) for r in s.ranges]] for e, s in eps.items()}
                for src, eps in self._seen.items() if keep is None or src in keep}

    def restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Take a :meth:`snapshot`'s sources: instead of everything (``replace``), or
        besides the sources held (a partition's sources after it was assigned)."""
        seen = {src: {int(e): Seen(int(v[0]), [list(r) for r in v[1]])
                      for e, v in eps.items()} for src, eps in snap.items()}
        if replace:
            self._seen = seen
        else:
            self._seen.update(seen)

    def drop(self, sources: Iterable[str]) -> None:
        """Forget these sources (their partition moved to another worker)."""
        for src in sources:
            self._seen.pop(src, None)
