"""A connector's dead letters: input it could not turn into readings, kept with the reason.

A connector that receives messages (MQTT) dead-letters what it cannot map to
``<prefix>.deadletter``, stage ``connector``, keyed by the source. The letter keeps the
original topic and (up to ``PAYLOAD_KEEP`` bytes of) the payload; it is numbered in
``offset`` as ``epoch * 1,000,000 + n``, so letters of different sessions never collapse
in ClickHouse (the deadletter table is keyed on topic, partition, offset and stage).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from connectors.exceptions import ConnectorConfigError
from schemas.events import DeadLetter
from schemas.topics import Topics

__all__ = ["PAYLOAD_KEEP", "DeadLetterPublisher", "DeadLetterSink", "connector_letter"]

logger = logging.getLogger(__name__)

PAYLOAD_KEEP = 64 * 1024  # a 10 MB payload is kept as its first 64 KiB, and says so


class DeadLetterSink(Protocol):
    """Where a connector's dead letters go."""

    def dead_letter(self, letter: DeadLetter) -> None: ...


def connector_letter(source: str, epoch: int, n: int, *, reason: str, detail: str,
                     topic: str, payload: bytes) -> DeadLetter:
    """The dead letter of one message a connector could not map (its ``n``-th)."""
    if len(payload) > PAYLOAD_KEEP:
        detail += f" (payload of {len(payload):,} bytes: the first {PAYLOAD_KEEP:,} kept)"
        payload = payload[:PAYLOAD_KEEP]
    return DeadLetter.of(stage="connector", reason=reason, detail=f"{source}: {detail}",
                         topic=topic, partition=-1, offset=epoch * 1_000_000 + n,
                         key=source.encode(), value=payload)


class DeadLetterPublisher:
    """Produces dead letters to ``<prefix>.deadletter``, counting sent, delivered, failed.

    Lifecycle: construct, ``dead_letter()`` and ``poll()`` from one thread, ``close()``
    (which waits up to ``timeout`` s for Kafka to confirm what is in flight).
    """

    def __init__(self, bootstrap: str, topics: Topics, *,
                 kafka_config: dict[str, Any] | None = None,
                 client_id: str = "millstream-connector-deadletter") -> None:
        self.topic = topics.deadletter
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "client.id": client_id,
                                "acks": "all", "enable.idempotence": True, "linger.ms": 50,
                                "logger": logging.getLogger("connectors.deadletter.librdkafka"),
                                "log_level": 2, **(kafka_config or {})}
        try:
            self._producer = Producer(conf)
        except Exception as exc:
            raise ConnectorConfigError(f"cannot create a Kafka producer for dead letters at "
                                       f"{bootstrap}: {exc}; check MILLSTREAM_KAFKA_*") from exc
        self.sent = self.delivered = self.failed = 0

    def dead_letter(self, letter: DeadLetter) -> None:
        try:
            self._producer.produce(self.topic, letter.encode(), letter.key_bytes(),
                                   on_delivery=self._on_delivery)
        except BufferError:
            self._producer.poll(0.5)
            try:
                self._producer.produce(self.topic, letter.encode(), letter.key_bytes(),
                                       on_delivery=self._on_delivery)
            except BufferError:
                self.failed += 1
                logger.error("dead letter dropped (local queue full): %s", letter.detail)
                return
        self.sent += 1
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def close(self, timeout: float = 10.0) -> None:
        left = self._producer.flush(timeout)
        if left:
            self.failed += left
            logger.error("%d dead letter(s) not confirmed by Kafka within %.0f s", left, timeout)

    def _on_delivery(self, err: KafkaError | None, _msg: Message | None) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            logger.error("Kafka did not accept a dead letter for %s: %s", self.topic, err)
