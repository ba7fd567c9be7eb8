"""Which readings are stored already: the highest seq per (source, epoch).

A source's readings are numbered without gaps and arrive in order (one key, one
partition), so a reading whose seq is at or below the highest one accepted is a
redelivery (a restart, a rebalance, a reset of the group's offsets, a frame produced
twice). The sink drops it before the insert, so ClickHouse's materialised views (the
rollups) see each reading once. The table ``readings_progress`` (kept by a view on
``readings``) holds what is stored; this class adds what is batched but not yet stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["SeqProgress"]

logger = logging.getLogger(__name__)


class SeqProgress:
    """Lifecycle: :meth:`load` from the table (on start and on each assignment), then
    :meth:`fresh_from` for each frame and :meth:`accept` once its rows are batched."""

    def __init__(self) -> None:
        self._max: dict[tuple[str, int], int] = {}

    def load(self, client: Client) -> int:
        """Merge in what the table says is stored; how many (source, epoch) pairs it knows."""
        rows = client.query("SELECT source, epoch, max(max_seq) FROM readings_progress "
                            "GROUP BY source, epoch").result_rows
        for source, epoch, top in rows:
            key = (str(source), int(epoch))
            if int(top) > self._max.get(key, 0):
                self._max[key] = int(top)
        return len(rows)

    def fresh_from(self, source: str, epoch: int, seq: int, last_seq: int) -> int:
        """The first seq of the frame ``seq..last_seq`` not stored yet (> last_seq: none)."""
        top = self._max.get((source, epoch), 0)
        return seq if top < seq else min(top + 1, last_seq + 1)

    def accept(self, source: str, epoch: int, last_seq: int) -> None:
        key = (source, epoch)
        if last_seq > self._max.get(key, 0):
            self._max[key] = last_seq
