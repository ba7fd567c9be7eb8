"""The sink's write queue: sealed batches per table, written in order by one writer thread.

The consuming thread decodes the next batch while the writer inserts the previous one
(the database client releases the GIL while ClickHouse works). Each table's batches are
written strictly in order; a batch whose write fails stays at the head of its queue, with
the same rows and token, and is retried after a backoff. ``written_gen(table)`` says how
far a table is written, for the offsets. Without :meth:`start` the queue is written
inline by :meth:`write_due`, in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sinks.batch import Batch, BatchPolicy
from sinks.exceptions import InsertError, SinkError

__all__ = ["BatchWriter"]

logger = logging.getLogger(__name__)


class BatchWriter:
    """Lifecycle: construct, :meth:`push` sealed batches (from one thread), optionally
    :meth:`start` the writer thread, :meth:`wait_idle`, :meth:`stop`.

    ``counts`` is the sink's counter dict: ``inserted``, ``insert_seconds`` (per table) and
    ``insert_errors`` are updated here, under :attr:`cond`; ``last_error`` is the last
    failed insert's error. ``on_written(table, rows, seconds)`` follows each insert.
    """

    def __init__(self, tables: Iterable[str], write: Callable[[Batch], None],
                 policy: BatchPolicy, counts: dict[str, Any],
                 on_written: Callable[[str, int, float], None] | None = None) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, deque[Batch]] = {t: deque() for t in tables}
        self._gen = dict.fromkeys(self.queues, -1)  # every batch <= this is written
        self._write, self._policy, self._counts = write, policy, counts
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._died: BaseException | None = None
        self._on_written = on_written
        self.last_error: str | None = None

    # -- used by the consuming thread --------------------------------------------------
    def push(self, batch: Batch) -> None:
        with self.cond:
            self.queues[batch.table].append(batch)
            self.cond.notify_all()

    def written_gen(self, table: str) -> int:
        with self.cond:
            return self._gen[table]

    def batches(self) -> list[Batch]:
        """The sealed batches not written yet (a snapshot)."""
        with self.cond:
            return [b for q in self.queues.values() for b in q]

    def failing(self) -> bool:
        """True while a table's next batch has failed and waits for its retry."""
        with self.cond:
            return any(q and q[0].attempts for q in self.queues.values())

    def flush(self, now: float) -> bool:
        """Write what is due (inline) or let the writer thread do it; False while a batch
        fails (or, inline, waits for its retry)."""
        self.check()
        if self._thread is None:
            return self.write_due(now)
        return not self.failing()

    def write_due(self, now: float) -> bool:
        """Inline: write every table's due batches in order; False if one fails or waits."""
        ok = True
        for table in self.queues:
            while (batch := self._head(table, now)) is not None:
                if not self._write_one(batch):
                    break
            ok = ok and not self.queues[table]
        return ok

    def wait_idle(self, deadline: float, *, until_failing: bool = False) -> bool:
        """Until every batch is written (True), the deadline passes, or (``until_failing``)
        a batch fails. Inline, the batches are written here, with their backoff."""
        while True:
            if self._thread is None:
                self.write_due(time.monotonic())
            self.check()
            with self.cond:
                empty = not any(self.queues.values())
                failing = any(q[0].attempts for q in self.queues.values() if q)
                if empty or (until_failing and failing) or time.monotonic() >= deadline:
                    return empty
                if self._thread is not None:
                    self.cond.wait(max(0.0, min(0.05, deadline - time.monotonic())))
            if self._thread is None:
                time.sleep(0.05)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sink-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer thread after the write in progress (the rest stays queued)."""
        if self._thread is None:
            return
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._thread.join()
        self._thread = None

    def check(self) -> None:
        """Raise if the writer thread died of a bug (rather than stall silently)."""
        if self._died is not None:
            raise SinkError(f"the sink's writer thread failed: {self._died!r}") from self._died

    # -- the writer --------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self.cond:
                    batch = self._next_due()
                    while batch is None and not self._stopping:
                        self.cond.wait(self._until_next_retry())
                        batch = self._next_due()
                    if self._stopping:
                        return
                assert batch is not None
                self._write_one(batch)
        except BaseException as exc:
            logger.exception("the sink's writer thread failed")
            self._died = exc

    def _head(self, table: str, now: float) -> Batch | None:
        with self.cond:
            q = self.queues[table]
            return q[0] if q and now >= q[0].retry_at else None

    def _next_due(self) -> Batch | None:
        now = time.monotonic()
        for q in self.queues.values():
            if q and now >= q[0].retry_at:
                return q[0]
        return None

    def _until_next_retry(self) -> float | None:
        waits = [q[0].retry_at for q in self.queues.values() if q]
        return max(0.0, min(waits) - time.monotonic()) if waits else None

    def _write_one(self, batch: Batch) -> bool:
        """Write the head batch of its table; on failure schedule its retry (backoff)."""
        t0 = time.monotonic()
        try:
            self._write(batch)
        except Exception as exc:
            with self.cond:
                batch.attempts += 1
                p = self._policy
                delay = min(p.retry_max_s, p.retry_initial_s * 2 ** (batch.attempts - 1))
                batch.retry_at = time.monotonic() + delay
                self._counts["insert_errors"] += 1
                self.last_error = str(InsertError(batch.table, batch.rows, batch.attempts,
                                                  delay, str(exc)[:500]))
                self.cond.notify_all()
            logger.error("%s", self.last_error)
            return False
        if batch.attempts:
            logger.info("inserting %d rows into %r succeeded after %d failed attempts",
                        batch.rows, batch.table, batch.attempts)
        with self.cond:
            popped = self.queues[batch.table].popleft()
            assert popped is batch, "only the writer removes batches, in order"
            self._gen[batch.table] = batch.gen
            self._counts["inserted"][batch.table] += batch.rows - batch.refused
            seconds = time.monotonic() - t0
            self._counts["insert_seconds"][batch.table] += seconds
            self.cond.notify_all()
        if self._on_written is not None:
            self._on_written(batch.table, batch.rows, seconds)
        return True
