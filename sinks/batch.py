"""The sink's units of work: rows per table, the batches they fill, where rows came from."""

from __future__ import annotations

import time
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Batch", "BatchPolicy", "Decoded", "Origin", "Reject", "Rows"]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When to flush, how to retry, how much to hold, how long to drain on stop."""

    batch_rows: int = 50_000  # flush a table once it holds this many rows ...
    flush_ms: int = 500  # ... or once its oldest row waited this long
    consume_messages: int = 500  # messages per consume() call
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    drain_timeout_s: float = 15.0  # on stop: how long to keep retrying a failing insert
    # backpressure: a message is taken only while at most this waits to be inserted, so
    # at most this plus one message's rows (bytes) is held (sinks/base.py)
    max_pending_rows: int = 500_000
    max_pending_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows for one table, column-oriented, in the order of the sink's ``columns[table]``."""

    table: str
    columns: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Reject:
    """Part or all of a message the sink could not accept, with a short stable reason."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Decoded:
    rows: Rows | None = None
    rejects: tuple[Reject, ...] = ()


class Origin(NamedTuple):
    """The message rows ``first_row..`` of a batch came from (for dead letters)."""

    first_row: int
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(slots=True)
class Batch:
    """One table's rows (column-oriented) from consecutive messages, and their origins.

    ``gen`` orders the batches of a table; ``token`` names this batch for insert
    deduplication: a retry inserts the same rows under the same token.
    """

    table: str
    column_names: tuple[str, ...]
    gen: int = 0
    data: list[list[Any]] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0  # size of the messages the rows came from
    started: float = 0.0  # monotonic time of the first row
    attempts: int = 0  # failed write attempts of this batch
    retry_at: float = 0.0
    refused: int = 0  # rows the database refused (the sink dead-lettered them)
    origins: list[Origin] = field(default_factory=list)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.data = [[] for _ in self.column_names]

    def add(self, columns: Sequence[Sequence[Any]], origin: Origin | None = None,
            nbytes: int = 0) -> None:
        if not self.rows:
            self.started = time.monotonic()
        if origin is not None:
            self.origins.append(origin._replace(first_row=self.rows))
        for dest, col in zip(self.data, columns, strict=True):
            dest.extend(col)
        self.rows += len(columns[0]) if columns else 0
        self.bytes += nbytes

    def columns(self, lo: int, hi: int) -> list[list[Any]]:
        """Rows ``lo..hi`` (exclusive), column-oriented."""
        if lo == 0 and hi == self.rows:
            return self.data
        return [col[lo:hi] for col in self.data]

    def origin_of(self, row: int) -> Origin | None:
        """The message that row ``row`` came from."""
        i = bisect_right([o.first_row for o in self.origins], row) - 1
        return self.origins[i] if i >= 0 else None
