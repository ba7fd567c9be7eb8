"""The dashboard's Kafka feed: one consumer thread that follows every topic the page shows.

No consumer group does the work: the feed assigns itself every partition and chooses where
each topic starts: the twin from the beginning (a compacted topic: the whole plant's
current state), alarm episodes from a look-back, the others from their last few hundred
messages (the recent past for a page just opened). It commits nothing and writes nothing.
Messages are decoded on this thread and handed over in batches (``deliver``, which the
server points at its event loop). A topic that does not exist yet is looked for again
every few seconds, and followed once it appears.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from millstream.dashboard.messages import Kind, decode
from schemas.events import now_ms
from schemas.exceptions import ContractError

__all__ = ["FeedItem", "KafkaFeed", "TopicPlan"]

logger = logging.getLogger(__name__)

FeedItem = tuple[Kind, str | None, Any]  # kind, key, decoded message (None: tombstone)


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """Where the feed starts on ``topic``: ``tail`` messages before the end of each
    partition, or (``since_ms``) the first message at or after that time, or (neither)
    the beginning."""

    topic: str
    kind: Kind
    tail: int | None = None
    since_ms: int | None = None


class KafkaFeed(threading.Thread):
    """Lifecycle: construct, :meth:`start`, :meth:`stop` (joins). :meth:`status` is safe
    from any thread."""

    def __init__(self, bootstrap: str, config: Mapping[str, str], plans: list[TopicPlan],
                 deliver: Callable[[list[FeedItem]], None], *, retry_s: float = 5.0,
                 batch: int = 500) -> None:
        super().__init__(name="dashboard-feed", daemon=True)
        self.bootstrap, self.config = bootstrap, dict(config)
        self.plans = {p.topic: p for p in plans}
        self.deliver, self.retry_s, self.batch = deliver, retry_s, batch
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.consumed: dict[str, int] = dict.fromkeys(self.plans, 0)
        self.invalid: dict[str, int] = dict.fromkeys(self.plans, 0)
        self.missing: set[str] = set(self.plans)
        self.lag: int | None = None
        self.caught_up: set[str] = set()  # topics read up to where they ended at the start
        self._ends: dict[tuple[str, int], int] = {}  # start-up end offsets per partition
        self.last_error: str | None = None
        self.last_error_at: int | None = None
        self.running = False

    def stop(self) -> None:
        self._stop.set()
        if self.is_alive():
            self.join(timeout=10)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running, "consumed": dict(self.consumed),
                    "invalid": dict(self.invalid), "lag": self.lag,
                    "topics_missing": sorted(self.missing), "caught_up": sorted(self.caught_up),
                    "last_error": self.last_error, "last_error_at": self.last_error_at}

    # -- the thread ----------------------------------------------------------------------
    def run(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"dashboard-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", **self.config})
        self.running = True
        try:
            self._loop(consumer)
        except Exception as exc:  # the page says so; /readyz turns not ready
            logger.exception("the dashboard's Kafka feed stopped")
            self._error(f"the Kafka feed stopped: {type(exc).__name__}: {exc}")
        finally:
            self.running = False
            consumer.close()

    def _loop(self, consumer: Consumer) -> None:
        next_look = next_lag = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.missing and now >= next_look:
                self._assign_new(consumer)
                next_look = now + self.retry_s
            if now >= next_lag:
                self._measure_lag(consumer)
                next_lag = now + 5.0
            msgs = consumer.consume(self.batch, timeout=0.2)
            items: list[FeedItem] = []
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    self._error(f"Kafka: {err.str()}")
                    continue
                items.extend(self._decode(msg.topic() or "", msg.partition() or 0,
                                          msg.offset() or 0, msg.key(), msg.value()))
            if items:
                self.deliver(items)

    def _decode(self, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None) -> list[FeedItem]:
        plan = self.plans[topic]
        with self._lock:
            self.consumed[topic] += 1
            end = self._ends.get((topic, partition))
            if end is not None and offset + 1 >= end:
                del self._ends[(topic, partition)]
                if not any(t == topic for t, _p in self._ends):
                    self.caught_up.add(topic)
        try:
            doc = decode(plan.kind, value)
        except ContractError as exc:
            with self._lock:
                self.invalid[topic] += 1
            self._error(f"{topic} partition {partition} offset {offset}: {exc}; skipped "
                        "(it stays on the topic)")
            return []
        return [(plan.kind, key.decode("utf-8", "replace") if key is not None else None, doc)]

    def _assign_new(self, consumer: Consumer) -> None:
        """Assign the partitions of the topics that exist now and were missing."""
        try:
            meta = consumer.list_topics(timeout=5)
        except KafkaException as exc:
            self._error(f"Kafka at {self.bootstrap} did not answer: {exc}")
            return
        found: list[TopicPartition] = []
        for topic in sorted(self.missing):
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None or not tmeta.partitions:
                continue
            found.extend(self._starts(consumer, topic, sorted(tmeta.partitions)))
            with self._lock:
                self.missing.discard(topic)
        if found:
            consumer.incremental_assign(found)
            logger.info("dashboard feed follows %s",
                        ", ".join(sorted({tp.topic for tp in found})))

    def _starts(self, consumer: Consumer, topic: str,
                partitions: list[int]) -> list[TopicPartition]:
        plan = self.plans[topic]
        out: list[TopicPartition] = []
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                 for p in partitions}
        times: dict[int, int] = {}
        if plan.since_ms is not None:
            asked = [TopicPartition(topic, p, plan.since_ms) for p in partitions]
            times = {tp.partition: tp.offset
                     for tp in consumer.offsets_for_times(asked, timeout=5)}
        with self._lock:
            for p in partitions:
                low, high = marks[p]
                if plan.tail is not None:
                    start = max(low, high - plan.tail)
                elif plan.since_ms is not None:
                    start = times[p] if times.get(p, -1) >= 0 else OFFSET_END
                else:
                    start = OFFSET_BEGINNING
                out.append(TopicPartition(topic, p, start))
                first = low if start == OFFSET_BEGINNING else start
                if start != OFFSET_END and high > first:
                    self._ends[(topic, p)] = high
            if not any(t == topic for t, _p in self._ends):
                self.caught_up.add(topic)
        return out

    def _measure_lag(self, consumer: Consumer) -> None:
        try:
            assigned = consumer.assignment()
            if not assigned:
                return
            total = 0
            for tp in consumer.position(assigned):
                _low, high = consumer.get_watermark_offsets(tp, timeout=2, cached=False)
                if tp.offset >= 0:
                    total += max(0, high - tp.offset)
            with self._lock:
                self.lag = total
        except KafkaException as exc:
            self._error(f"Kafka at {self.bootstrap}: {exc}")

    def _error(self, text: str) -> None:
        logger.warning("dashboard feed: %s", text)
        with self._lock:
            self.last_error, self.last_error_at = text, now_ms()
