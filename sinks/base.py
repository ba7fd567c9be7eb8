"""The sink base: consume from Kafka, batch rows per table, write, then commit (at-least-once).

A sink implements :meth:`BatchingSink.decode` (one Kafka message -> rows for one table, or
rejects) and :meth:`BatchingSink.write` (insert one table's batch). The base owns the rest:
batching by size and age, a writer thread that inserts sealed batches while the next ones
are decoded (:mod:`sinks.writer`), retry with backoff while the partitions are paused
(backpressure), and committing a message's offset only once every row it produced has been
written.

Backpressure bounds the rows and bytes held (open batches and sealed ones not inserted):
a message is taken only while the held rows are at most ``max_pending_rows`` and the held
bytes at most ``max_pending_bytes``, and while no insert is failing. The rest of a
consume() call's messages is given back (the partitions are paused and rewound to them),
so the sink never holds more than ``max_pending_rows`` plus the rows of one message
(and ``max_pending_bytes`` plus one message's bytes), however many messages librdkafka
had fetched ahead. (Should a rewind fail, that partition's messages are taken in past the
bound rather than skipped, and a warning says so.)
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from schemas.kafka_errors import KafkaErrorLog
from sinks.batch import Batch, BatchPolicy, Decoded, Origin, Reject, Rows
from sinks.writer import BatchWriter

__all__ = ["Batch", "BatchPolicy", "BatchingSink", "Decoded", "Origin", "Reject", "Rows",
           "consumer_lag"]

logger = logging.getLogger(__name__)

_TP = tuple[str, int]


def consumer_lag(consumer: Consumer) -> int | None:
    """Messages behind the high watermark over ``consumer``'s assignment, from cached
    offsets (None when it cannot tell: closed, or not assigned yet)."""
    try:
        total = 0
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                total += max(0, high - tp.offset)
        return total
    except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed
        return None


class BatchingSink(ABC):
    """Lifecycle: construct, :meth:`run` until ``stop`` is set (it subscribes, loops,
    drains, commits and closes the consumer), then read :meth:`status`.

    Each table has one open batch that fills, and a queue of sealed batches that the
    writer thread inserts in order while this thread consumes and decodes. A batch whose
    write fails stays sealed (no new rows join it, so a retry inserts exactly the same
    rows) and is retried with backoff while consumption is paused. :meth:`write` runs in
    the writer thread (outside :meth:`run`, in the caller's).
    """

    def __init__(
        self,
        consumer_config: Mapping[str, str],
        topics: Sequence[str],
        columns: Mapping[str, Sequence[str]],
        policy: BatchPolicy | None = None,
    ) -> None:
        # a sink reads in bulk: fetch up to 10 MB per partition per request (librdkafka's
        # default is 1 MB), so the broker serves a backlog in a tenth of the requests
        conf: dict[str, Any] = {"auto.offset.reset": "earliest",
                                "max.partition.fetch.bytes": str(10 << 20), **consumer_config}
        conf["enable.auto.commit"] = False
        # a refused login or an untrusted broker certificate, said once with the fix
        conf.setdefault("error_cb", KafkaErrorLog(str(conf.get("bootstrap.servers")), conf,
                                                  logger))
        self.policy = policy or BatchPolicy()
        self._consumer = Consumer(conf)
        self._topics = list(topics)
        self._columns = {t: tuple(cols) for t, cols in columns.items()}
        self._open = {t: Batch(t, cols) for t, cols in self._columns.items()}
        self._pending: dict[_TP, deque[tuple[int, str | None, int]]] = {}
        self._commit_to: dict[_TP, int] = {}
        self._committed: dict[_TP, int] = {}
        self._paused = False
        self.counts: dict[str, Any] = {
            "consumed": 0, "inserted": dict.fromkeys(columns, 0), "insert_errors": 0,
            "insert_seconds": dict.fromkeys(columns, 0.0), "rejected": 0, "commits": 0,
            "paused": 0, "pending_rows_max": 0,
        }
        self._writer = BatchWriter(self._columns, self.write, self.policy, self.counts,
                                   on_written=self.on_written)
        self._sealed = self._writer.queues

    # -- what a sink implements ---------------------------------------------------------
    @abstractmethod
    def decode(self, msg: Message) -> Decoded:
        """Turn one message into rows; raise schemas ContractError for a bad message."""

    @abstractmethod
    def write(self, batch: Batch) -> None:
        """Insert the batch; raise to have the base retry it later (same rows, same token)."""

    def on_reject(self, msg: Message, reject: Reject) -> None:
        """A message (or part of one) was refused. Default: log it."""
        logger.warning("rejected %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(),
                       reject.reason)

    def ready_to_commit(self) -> bool:
        """Hook: False delays the commit (e.g. until dead letters are delivered)."""
        return True

    def on_written(self, table: str, rows: int, seconds: float) -> None:  # noqa: B027
        """Hook: a batch of ``rows`` was inserted into ``table`` in ``seconds`` (metrics)."""

    def tick(self) -> None:  # noqa: B027 (an optional hook)
        """Hook called about every 100 ms from the loop (status files, producer polling)."""

    def on_assign(self, parts: list[TopicPartition]) -> None:  # noqa: B027 (optional hook)
        """Hook: partitions were assigned to this sink."""

    # -- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._writer.start()
        try:
            while not stop.is_set():
                self._step()
            self._drain()
        finally:
            self._writer.stop()
            self._consumer.close()

    def _step(self) -> None:
        msgs = self._consumer.consume(num_messages=self.policy.consume_messages, timeout=0.1)
        if msgs:
            taken = self._take(msgs)
            if taken < len(msgs):
                self._give_back(msgs[taken:])
            self.counts["pending_rows_max"] = max(self.counts["pending_rows_max"],
                                                  self.pending_rows())
        self._flush_due(force=False)
        self._commit()
        self.tick()

    def _take(self, msgs: Sequence[Message]) -> int:
        """Accept messages in order while there is room (see the module's docstring); how
        many were accepted. The held amounts are added up locally, and counted again only
        when that sum passes a bound (the writer thread may have inserted some meanwhile)."""
        p = self.policy
        rows, size = self.pending_rows(), self.pending_bytes()
        for i, msg in enumerate(msgs):
            if rows > p.max_pending_rows or size > p.max_pending_bytes:
                rows, size = self.pending_rows(), self.pending_bytes()
                if rows > p.max_pending_rows or size > p.max_pending_bytes:
                    return i
            if self._writer.failing():
                return i
            added = self._accept(msg)
            rows, size = rows + added, size + len(msg.value() or b"")
        return len(msgs)

    def _give_back(self, msgs: Sequence[Message]) -> None:
        """Leave ``msgs`` (consumed, not accepted) for later: pause, and rewind each of their
        partitions to its first one, so they are fetched again once consumption resumes.
        A partition that cannot be rewound keeps its messages: they are accepted past the
        bound rather than skipped (their offsets would be committed unwritten)."""
        self._backpressure(failing=self._writer.failing())  # (a rewind works unpaused too)
        first: dict[_TP, Message] = {}
        for msg in msgs:
            if msg.error() is None:
                first.setdefault((msg.topic() or "", msg.partition() or 0), msg)
        stuck: set[_TP] = set()
        for tp, msg in first.items():
            try:
                self._consumer.seek(TopicPartition(tp[0], tp[1], msg.offset() or 0))
            except KafkaException as exc:
                logger.warning("could not rewind %s[%d] to %s, taking its messages in "
                               "now: %s", tp[0], tp[1], msg.offset(), exc)
                stuck.add(tp)
        for msg in msgs:
            if (msg.topic() or "", msg.partition() or 0) in stuck:
                self._accept(msg)

    def _accept(self, msg: Message) -> int:
        """Decode ``msg`` into its table's open batch; the rows it added."""
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("consumer error: %s", err)
            return 0
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
        tp = (msg.topic() or "", msg.partition() or 0)
        if rows is not None and rows.columns and len(rows.columns[0]):
            batch = self._open[rows.table]
            batch.add(rows.columns, Origin(0, tp[0], tp[1], msg.offset() or 0, msg.key()),
                      len(msg.value() or b""))
            table, gen = rows.table, batch.gen
        self._pending.setdefault(tp, deque()).append((msg.offset() or 0, table, gen))
        if table is None:
            return 0
        if batch.rows >= self.policy.batch_rows:
            self._seal(table)
            self._writer.flush(time.monotonic())
        return len(rows.columns[0]) if rows is not None else 0

    def _seal(self, table: str) -> None:
        batch = self._open[table]
        self._open[table] = Batch(table, self._columns[table], gen=batch.gen + 1)
        self._writer.push(batch)

    def _flush_due(self, *, force: bool) -> bool:
        """Seal the batches that are due and have them written; True when no batch is
        failing (inline: or waiting for its retry)."""
        now = time.monotonic()
        age = self.policy.flush_ms / 1000
        for table, batch in self._open.items():
            if batch.rows and (force or batch.rows >= self.policy.batch_rows
                               or now - batch.started >= age):
                self._seal(table)
        ok = self._writer.flush(now)
        self._backpressure(failing=not ok)
        return ok

    # -- offsets ------------------------------------------------------------------------
    def _advance(self) -> None:
        written = {t: self._writer.written_gen(t) for t in self._columns}
        for tp, dq in self._pending.items():
            while dq:
                offset, table, gen = dq[0]
                if table is not None and written[table] < gen:
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
        self._flush_due(force=True)
        self._writer.wait_idle(time.monotonic() + self.policy.drain_timeout_s)
        self._writer.stop()  # after the write in progress, if one still fails
        self._commit()
        left = self.pending_rows()
        if left:
            logger.error("stopping with %d rows not inserted; their offsets are not "
                         "committed, so they will be consumed again on restart", left)

    # -- rebalances and backpressure ----------------------------------------------------
    def _backpressure(self, *, failing: bool) -> None:
        """Pause while an insert fails or too much waits; resume below half the bounds."""
        rows, size = self.pending_rows(), self.pending_bytes()
        p = self.policy
        over = rows > p.max_pending_rows or size > p.max_pending_bytes
        under = rows <= p.max_pending_rows // 2 and size <= p.max_pending_bytes // 2
        if failing or over:
            self._set_paused(True, "an insert is failing" if failing else
                             f"{rows} rows ({size} bytes) wait to be inserted")
        elif under:
            self._set_paused(False, "")

    def _set_paused(self, paused: bool, why: str) -> None:
        if paused == self._paused:
            return
        parts = self._consumer.assignment()
        if parts:
            (self._consumer.pause if paused else self._consumer.resume)(parts)
        self._paused = paused
        if paused:
            self.counts["paused"] += 1
        logger.info("consumption %s", f"paused: {why}" if paused else "resumed")

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if self._paused and parts:
            consumer.pause(parts)
        try:
            self.on_assign(parts)
        except Exception:
            logger.exception("the sink's on_assign hook failed")

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # commit what can be written now; a failing insert does not hold up the rebalance
        self._flush_due(force=True)
        self._writer.wait_idle(time.monotonic() + self.policy.drain_timeout_s,
                               until_failing=True)
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
        return consumer_lag(self._consumer)

    def insert_failing(self) -> bool:
        """True while an insert fails and waits for its retry."""
        return self._writer.failing()

    def last_insert_error(self) -> str | None:
        return self._writer.last_error

    def _batches(self) -> list[Batch]:
        return [*self._open.values(), *self._writer.batches()]

    def pending_rows(self) -> int:
        return sum(b.rows for b in self._batches())

    def pending_bytes(self) -> int:
        return sum(b.bytes for b in self._batches())
