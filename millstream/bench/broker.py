"""Kafka for a benchmark: the configured cluster, else an embedded broker of its own.

``with bench_kafka(settings) as k:`` gives the bootstrap and a description for the result;
topics the benchmark creates are its own (unique names) and are deleted on the way out
from a shared cluster; an embedded broker is stopped and its data directory removed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from millstream.settings import Settings
from schemas.exceptions import MillstreamError

__all__ = ["BenchKafka", "Produced", "bench_kafka", "produce", "progress"]

logger = logging.getLogger(__name__)


def progress(msg: str) -> None:
    """One progress line on stderr (stdout is for the result)."""
    print(f"millstream bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class BenchKafka:
    """A reachable Kafka and the topics this run created on it."""

    bootstrap: str
    description: str  # "embedded 4.1.1" or the bootstrap of the configured cluster
    conf: dict[str, str] = field(default_factory=dict)  # librdkafka security options
    created: list[str] = field(default_factory=list)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, **self.conf})

    def create_topics(self, names: Sequence[str], timeout: float = 30.0,
                      partitions: int = 1) -> None:
        """Fresh topics (one partition unless told); fails if one exists (names are unique
        per run)."""
        new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        admin = self.admin()  # kept alive until every future resolves
        for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except Exception as exc:
                raise MillstreamError(f"could not create benchmark topic {name}: {exc}") from exc
            self.created.append(name)

    def delete_created(self, prefix: str | None = None) -> None:
        """Delete this run's topics (and any others whose name contains ``prefix``, such as
        the internal topics of the frameworks it ran); best effort."""
        try:
            admin = self.admin()
            names = set(self.created)
            if prefix:
                names |= {t for t in admin.list_topics(timeout=10).topics if prefix in t}
            if names:
                for fut in admin.delete_topics(sorted(names), operation_timeout=30).values():
                    fut.result(30)
        except Exception as exc:  # cleanup must not hide the result or the first error
            logger.warning("could not delete benchmark topics %s: %s", self.created, exc)


@contextmanager
def bench_kafka(settings: Settings) -> Iterator[BenchKafka]:
    if settings.kafka_bootstrap:
        k = BenchKafka(settings.kafka_bootstrap, settings.kafka_bootstrap,
                       settings.kafka_client_config())
        progress(f"using Kafka at {k.bootstrap}")
        yield k
        return
    from millstream.stack.kafka import kafka_for

    with tempfile.TemporaryDirectory(prefix="millstream-bench-kafka-") as tmp:
        t0 = time.monotonic()
        with kafka_for(settings, Path(tmp)) as bootstrap:
            progress(f"Kafka up at {bootstrap} in {time.monotonic() - t0:.1f}s")
            yield BenchKafka(bootstrap, f"embedded {settings.kafka_version}",
                             settings.kafka_client_config())
        progress("embedded Kafka stopped")


@dataclass(frozen=True, slots=True)
class Produced:
    messages: int
    bytes: int  # sum of the message values
    seconds: float


def produce(k: BenchKafka, topic: str, messages: Iterable[tuple[bytes, bytes]],
            timeout: float = 300.0, compression: str = "none",
            conf: dict[str, Any] | None = None) -> Produced:
    """Produce every message and wait until the broker has them all; ``compression`` as
    librdkafka's ``compression.type`` (the connectors use lz4); ``conf`` adds to (or
    overrides) the producer's settings, e.g. the connectors' idempotence."""
    failed: list[str] = []
    count = size = 0

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    p = Producer({"bootstrap.servers": k.bootstrap, **k.conf, "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
                  "message.max.bytes": 10_000_000, "acks": "all",
                  "compression.type": compression, **(conf or {})})
    t0 = time.monotonic()
    deadline = t0 + timeout
    for key, value in messages:
        count += 1
        size += len(value)
        while True:
            try:
                p.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                p.poll(0.05)
                if time.monotonic() > deadline:
                    raise MillstreamError(f"producing to {topic} took over {timeout:.0f}s; "
                                          "is the broker overloaded?") from None
        p.poll(0)
    left = p.flush(max(1.0, deadline - time.monotonic()))
    if left or failed:
        raise MillstreamError(
            f"producing to {topic}: {left} messages not delivered within {timeout:.0f}s, "
            f"{len(failed)} failed (first: {failed[:1]})")
    return Produced(count, size, time.monotonic() - t0)
