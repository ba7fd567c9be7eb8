"""The sink's buffer bound on a real Kafka, without a database: a consume() call returns
hundreds of messages at once, yet the sink holds at most ``max_pending_rows`` plus one
message's rows. The messages it had no room for are fetched again later (the partitions
are rewound to them), and in the end every row is written exactly once and every offset
committed."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from schemas.topics import Topics
from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Rows
from tests.integration.test_sink_clickhouse import wait_for

pytestmark = pytest.mark.integration

MESSAGES, PER_MESSAGE = 600, 100  # rows of message i: i * 1000 + 0..99
POLICY = BatchPolicy(batch_rows=1000, flush_ms=200, consume_messages=500,
                     retry_initial_s=0.05, retry_max_s=0.2, max_pending_rows=3000)
BOUND = POLICY.max_pending_rows + PER_MESSAGE


class ListSink(BatchingSink):
    """Writes rows to a list, slowly (so the consumer runs ahead of it); raises while
    ``failing`` is set."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        super().__init__({"bootstrap.servers": bootstrap, "group.id": group}, [topic],
                         {"t": ("x",)}, POLICY)
        self.rows: list[int] = []
        self.failing = threading.Event()

    def decode(self, msg: Message) -> Decoded:
        i = int(msg.value() or b"")
        return Decoded(Rows("t", [range(i * 1000, i * 1000 + PER_MESSAGE)]))

    def write(self, batch: Batch) -> None:
        time.sleep(0.02)
        if self.failing.is_set():
            raise OSError("the database is away (test)")
        self.rows.extend(batch.data[0])


def test_the_buffer_stays_within_its_bound_and_nothing_is_lost(
    kafka_bootstrap: str, topics: Topics
) -> None:
    topic = topics.readings  # any topic with several partitions; the values are our own
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i in range(MESSAGES):
        producer.produce(topic, str(i).encode(), f"k{i % 7}".encode())
    assert producer.flush(30) == 0
    group = f"backpressure-{uuid.uuid4().hex[:8]}"
    sink = ListSink(kafka_bootstrap, topic, group)
    sink.failing.set()  # first an outage: nothing is written
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:  # shown by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="list-sink", daemon=True)
    thread.start()
    try:
        wait_for(lambda: sink.counts["insert_errors"] >= 3, 60, "inserts to fail")
        held = sink.pending_rows()
        consumed = sink.counts["consumed"]
        time.sleep(1.0)  # several retries: still paused, nothing more taken in
        assert sink.counts["consumed"] == consumed and sink.pending_rows() == held
        assert held <= BOUND and sink.counts["pending_rows_max"] <= BOUND
        assert sink.counts["consumed"] < MESSAGES // 2  # far from all the fetched ones
        sink.failing.clear()  # the database is back: the rest is taken in by the bound
        wait_for(lambda: len(sink.rows) >= MESSAGES * PER_MESSAGE, 60, "every row")
    finally:
        stop.set()
        thread.join(60)
    assert not errors and not thread.is_alive()
    print(f"\nbackpressure: at most {sink.counts['pending_rows_max']} rows held "
          f"(bound {BOUND}), {sink.counts['paused']} pauses")
    assert sink.counts["pending_rows_max"] <= BOUND
    assert sink.counts["paused"] >= 2  # the outage, and the bound while catching up
    expected = Counter(i * 1000 + j for i in range(MESSAGES) for j in range(PER_MESSAGE))
    assert Counter(sink.rows) == expected  # each row once: none lost, none twice
    assert sink.counts["consumed"] == MESSAGES  # a message given back is taken once
    assert committed(kafka_bootstrap, topic, group) == end_offsets(kafka_bootstrap, topic)


def _partitions(c: Consumer, topic: str) -> list[TopicPartition]:
    meta = c.list_topics(topic, timeout=10).topics[topic]
    return [TopicPartition(topic, p) for p in sorted(meta.partitions)]


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in c.committed(_partitions(c, topic), 10)
                if tp.offset >= 0}
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1]
                for tp in _partitions(c, topic)}
        return {p: end for p, end in ends.items() if end > 0}
    finally:
        c.close()
