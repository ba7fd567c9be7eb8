"""The sink base: consume from Kafka, batch rows per table, write, then commit (at-least-once).

A sink implements :meth:`BatchingSink.decode` (one Kafka message -> rows for one table, or
rejects) and :meth:`BatchingSink.write` (insert one table's batch). The base owns the rest:
batching by size and age, retry with backoff while the partitions are paused (backpressure),
and committing a message's offset only once every row it produced has been written.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sinks.exceptions import InsertError

__all__ = ["Batch", "BatchPolicy", "BatchingSink", "Decoded", "Reject", "Rows"]

logger = logging.getLogger(__name__)

_TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When to flush, how to retry, how long to drain on stop."""

    batch_rows: int = 50_000  # flush a table once it holds this many rows ...
    flush_ms: int = 500  # ... or once its oldest row waited this long
    consume_messages: int = 500  # messages per consume() call
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    drain_timeout_s: float = 15.0  # on stop: how long to keep retrying a failing insert


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


@dataclass(slots=True)
class Batch:
    """One table's pending rows (column-oriented) and the generation they belong to."""

    table: str
    column_names: tuple[str, ...]
    gen: int = 0
    data: list[list[Any]] = field(default_factory=list)
    rows: int = 0
    started: float = 0.0  # monotonic time of the first row
    attempts: int = 0  # failed write attempts of this batch
    retry_at: float = 0.0

    def __post_init__(self) -> None:
        self.data = [[] for _ in self.column_names]

    def add(self, columns: Sequence[Sequence[Any]]) -> None:
        if not self.rows:
            self.started = time.monotonic()
        for dest, col in zip(self.data, columns, strict=True):
            dest.extend(col)
        self.rows += len(columns[0]) if columns else 0


class BatchingSink(ABC):
    """Lifecycle: construct, :meth:`run` until ``stop`` is set (it subscribes, loops,
    drains, commits and closes the consumer), then read :meth:`status`."""

    def __init__(
        self,
        consumer_config: Mapping[str, str],
        topics: Sequence[str],
        columns: Mapping[str, Sequence[str]],
        policy: BatchPolicy | None = None,
    ) -> None:
        conf: dict[str, Any] = {"auto.offset.reset": "earliest", **consumer_config}
        conf["enable.auto.commit"] = False
        self.policy = policy or BatchPolicy()
        self._consumer = Consumer(conf)
        self._topics = list(topics)
        self._batches = {t: Batch(t, tuple(cols)) for t, cols in columns.items()}
        self._pending: dict[_TP, deque[tuple[int, str | None, int]]] = {}
        self._commit_to: dict[_TP, int] = {}
        self._committed: dict[_TP, int] = {}
        self._paused = False
        self.counts: dict[str, Any] = {
            "consumed": 0, "inserted": dict.fromkeys(columns, 0), "insert_errors": 0,
            "insert_seconds": dict.fromkeys(columns, 0.0), "rejected": 0, "commits": 0,
        }

    # -- what a sink implements ---------------------------------------------------------
    @abstractmethod
    def decode(self, msg: Message) -> Decoded:
        """Turn one message into rows; raise schemas ContractError for a bad message."""

    @abstractmethod
    def write(self, batch: Batch) -> None:
        """Insert the batch; raise to have the base retry it later."""

    def on_reject(self, msg: Message, reject: Reject) -> None:
        """A message (or part of one) was refused. Default: log it."""
        logger.warning("rejected %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(),
                       reject.reason)

    def ready_to_commit(self) -> bool:
        """Hook: False delays the commit (e.g. until dead letters are delivered)."""
        return True

    def tick(self) -> None:  # noqa: B027 (an optional hook)
        """Hook called about every 100 ms from the loop (status files, producer polling)."""

    # -- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            while not stop.is_set():
                self._step()
            self._drain()
        finally:
            self._consumer.close()

    def _step(self) -> None:
        timeout = 0.1
        msgs = self._consumer.consume(num_messages=self.policy.consume_messages, timeout=timeout)
        for msg in msgs:
            self._accept(msg)
        self._flush_due(force=False)
        self._commit()
        self.tick()

    def _accept(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("consumer error: %s", err)
            return
        self.counts["consumed"] += 1
        try:
            decoded = self.decode(msg)
        except Exception as exc:  # a bad message never kills the sink
            reason = getattr(exc, "reason", "decode-error")
            decoded = Decoded(rejects=(Reject(reason, getattr(exc, "detail", repr(exc))),))
        for reject in decoded.rejects:
            self.counts["rejected"] += 1
            try:
                self.on_reject(msg, reject)
            except Exception:
                logger.exception("handling a rejected message failed")
        table, gen = None, 0
        rows = decoded.rows
        if rows is not None and rows.columns and len(rows.columns[0]):
            batch = self._batches[rows.table]
            batch.add(rows.columns)
            table, gen = rows.table, batch.gen
        tp = (msg.topic() or "", msg.partition() or 0)
        self._pending.setdefault(tp, deque()).append((msg.offset() or 0, table, gen))
        if table is not None and batch.rows >= self.policy.batch_rows and not batch.attempts:
            self._flush(batch)

    def _flush_due(self, *, force: bool) -> bool:
        """Write the batches that are due; True when no batch is failing (or waiting to retry)."""
        now = time.monotonic()
        age = self.policy.flush_ms / 1000
        ok = True
        for batch in self._batches.values():
            if not batch.rows:
                continue
            due = force or batch.rows >= self.policy.batch_rows or now - batch.started >= age
            if due and now >= batch.retry_at:
                ok = self._flush(batch) and ok
            elif batch.attempts:
                ok = False
        if ok and self._paused:
            self._set_paused(False)
        return ok

    def _flush(self, batch: Batch) -> bool:
        t0 = time.monotonic()
        try:
            self.write(batch)
        except Exception as exc:
            batch.attempts += 1
            delay = min(self.policy.retry_max_s,
                        self.policy.retry_initial_s * 2 ** (batch.attempts - 1))
            batch.retry_at = time.monotonic() + delay
            self.counts["insert_errors"] += 1
            err = InsertError(batch.table, batch.rows, batch.attempts, delay, str(exc)[:500])
            logger.error("%s", err)
            self._set_paused(True)
            return False
        self.counts["inserted"][batch.table] += batch.rows
        self.counts["insert_seconds"][batch.table] += time.monotonic() - t0
        self._batches[batch.table] = Batch(batch.table, batch.column_names, gen=batch.gen + 1)
        return True

    # -- offsets ------------------------------------------------------------------------
    def _advance(self) -> None:
        for tp, dq in self._pending.items():
            while dq:
                offset, table, gen = dq[0]
                if table is not None and self._batches[table].gen <= gen:
                    break
                dq.popleft()
                self._commit_to[tp] = offset + 1

    def _commit(self) -> None:
        self._advance()
        todo = [TopicPartition(t, p, off) for (t, p), off in self._commit_to.items()
                if self._committed.get((t, p)) != off]
        if not todo or not self.ready_to_commit():
            return
        try:
            self._consumer.commit(offsets=todo, asynchronous=False)
        except KafkaException as exc:
            logger.warning("commit failed, will retry: %s", exc)
            return
        for tp in todo:
            self._committed[(tp.topic, tp.partition)] = tp.offset
        self.counts["commits"] += 1

    def _drain(self) -> None:
        deadline = time.monotonic() + self.policy.drain_timeout_s
        while not self._flush_due(force=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._commit()
        left = sum(b.rows for b in self._batches.values())
        if left:
            logger.error("stopping with %d rows not inserted; their offsets are not "
                         "committed, so they will be consumed again on restart", left)

    # -- rebalances and backpressure ----------------------------------------------------
    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        parts = self._consumer.assignment()
        if parts:
            (self._consumer.pause if paused else self._consumer.resume)(parts)
        self._paused = paused
        logger.info("consumption %s", "paused until the insert succeeds" if paused else "resumed")

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if self._paused and parts:
            consumer.pause(parts)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._flush_due(force=True)
        self._commit()
        self._forget(parts)

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._forget(parts)

    def _forget(self, parts: list[TopicPartition]) -> None:
        # rows already batched stay and are written later: duplicates collapse in the table
        for tp in parts:
            key = (tp.topic, tp.partition)
            self._pending.pop(key, None)
            self._commit_to.pop(key, None)
            self._committed.pop(key, None)

    # -- observability ------------------------------------------------------------------
    def lag(self) -> int | None:
        """Messages behind the high watermark over the assignment, from cached offsets."""
        try:
            total = 0
            for tp in self._consumer.position(self._consumer.assignment()):
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    total += max(0, high - tp.offset)
            return total
        except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed
            return None

    def pending_rows(self) -> int:
        return sum(b.rows for b in self._batches.values())
