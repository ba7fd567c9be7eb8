"""Produce one message and wait for Kafka's acknowledgement, retrying until it comes.

The executor publishes a result (and audit, control markers) before it commits a
command's offset or writes to a device; :meth:`Publisher.publish` returns only when the
message is acknowledged, or False when the executor was told to stop first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

__all__ = ["Publisher"]

logger = logging.getLogger(__name__)

_FLUSH_S = 5.0


class Publisher:
    """Lifecycle: ``Publisher(conf, stop)``; ``publish()`` per message; ``close()``."""

    def __init__(self, conf: dict[str, str], stop: threading.Event) -> None:
        self.producer = Producer({"acks": "all", "linger.ms": 0, **conf})
        self.stop = stop

    def publish(self, topic: str, key: bytes, value: bytes | None) -> bool:
        """Produce and wait for the acknowledgement; False: stopped before it came (the
        caller must not commit or act on it). ``value`` None is a tombstone."""
        while True:
            errors: list[str] = []
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=_collect(errors))
                pending = self.producer.flush(_FLUSH_S)
            except (BufferError, KafkaException) as exc:
                errors.append(repr(exc))
                pending = 0
            if pending == 0 and not errors:
                return True
            logger.error("executor: cannot publish to %s (%s); retrying. Check that Kafka is "
                         "up and the topic exists", topic, "; ".join(errors) or "no ack")
            if self.stop.wait(1.0):
                return False

    def close(self) -> None:
        self.producer.flush(_FLUSH_S)


def _collect(errors: list[str]) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback that appends the delivery error, if any, to ``errors``."""

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    return delivered
