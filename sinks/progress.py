"""Which readings are stored already, per (source, epoch), as ranges of seq.

A reading delivered again (a restart, a rebalance, a reset of the group's offsets, a frame
produced twice) is dropped before the insert, so ClickHouse's materialised views (the
rollups) see each reading once. Only a reading known to be done is dropped: one accepted
by this process, or inside a range the table ``readings_progress`` proves complete
(``n = hi - lo + 1``). Frames that arrive out of order are therefore never lost; at worst
a redelivery after a restart is stored again (the readings table still collapses it).
"""

from __future__ import annotations

import bisect
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["Ranges", "SeqProgress"]

logger = logging.getLogger(__name__)


class Ranges:
    """Disjoint, sorted, inclusive ranges of integers; adding merges neighbours."""

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []

    def add(self, lo: int, hi: int) -> None:
        i = bisect.bisect_left(self.hi, lo - 1)  # first range that may touch [lo, hi]
        j = i
        while j < len(self.lo) and self.lo[j] <= hi + 1:
            lo, hi = min(lo, self.lo[j]), max(hi, self.hi[j])
            j += 1
        self.lo[i:j], self.hi[i:j] = [lo], [hi]

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi] not covered."""
        out: list[tuple[int, int]] = []
        i = bisect.bisect_left(self.hi, lo)
        cur = lo
        while cur <= hi and i < len(self.lo) and self.lo[i] <= hi:
            if self.lo[i] > cur:
                out.append((cur, self.lo[i] - 1))
            cur = max(cur, self.hi[i] + 1)
            i += 1
        if cur <= hi:
            out.append((cur, hi))
        return out


class SeqProgress:
    """Lifecycle: :meth:`load` from the table (on start and on each assignment), then
    :meth:`missing` for each frame and :meth:`accept` for the ranges that were batched."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, int], Ranges] = {}

    def load(self, client: Client) -> int:
        """Add the complete ranges the table knows; how many (source, epoch) it has."""
        rows = client.query("SELECT source, epoch, min(lo), max(hi), sum(n) "
                            "FROM readings_progress GROUP BY source, epoch").result_rows
        for source, epoch, lo, hi, n in rows:
            if int(n) == int(hi) - int(lo) + 1:
                self.accept(str(source), int(epoch), int(lo), int(hi))
        return len(rows)

    def missing(self, source: str, epoch: int, seq: int, last_seq: int) -> list[tuple[int, int]]:
        """The ranges of seq..last_seq not done yet."""
        done = self._done.get((source, epoch))
        return [(seq, last_seq)] if done is None else done.missing(seq, last_seq)

    def accept(self, source: str, epoch: int, lo: int, hi: int) -> None:
        self._done.setdefault((source, epoch), Ranges()).add(lo, hi)
