"""The Kafka side of a connector: readings frames to ``<prefix>.readings``, counted.

An idempotent producer (``acks=all``) keyed by source, so a source's frames land in order
on one partition and a retry never duplicates a frame. The counters say how many readings
were handed to Kafka, confirmed, and lost, so a status file can prove nothing went missing.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.exceptions import ConnectorConfigError
from schemas.kafka_errors import explain_kafka_error
from schemas.readings import ReadingFrame
from schemas.topics import Topics

__all__ = ["DEFAULT_PRODUCER_CONFIG", "ReadingPublisher"]

logger = logging.getLogger(__name__)

DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    # a frame is already a batch of up to 1000 readings; a longer linger adds its wait to
    # every frame of low traffic (the fast path's), and librdkafka's default is 5 as well
    "linger.ms": 5,
    "compression.type": "lz4",
}


class ReadingPublisher:
    """Produce :class:`ReadingFrame` s and count readings produced, delivered and failed.

    Lifecycle: construct, ``publish()`` frames and ``poll()`` often (it serves delivery
    callbacks and retries frames the local queue had no room for), ``flush()``, ``close()``.
    Not thread-safe: call it from one thread (the connector's event loop).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        *,
        kafka_config: dict[str, Any] | None = None,
        client_id: str = "millstream-connector",
    ) -> None:
        self.topic = topics.readings
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            **DEFAULT_PRODUCER_CONFIG,
            "error_cb": self._on_error,
            # librdkafka's own log repeats what error_cb reports; keep it for the critical
            "logger": logging.getLogger("connectors.publisher.librdkafka"),
            "log_level": 2,
        }
        conf.update(kafka_config or {})
        self.bootstrap = bootstrap
        self._login = {k: conf.get(k) for k in ("sasl.username", "sasl.mechanism",
                                                "ssl.ca.location")}  # for errors; no password
        try:
            self._producer = Producer(conf)
        except Exception as exc:  # KafkaException for a bad key or value
            raise ConnectorConfigError(
                f"cannot create a Kafka producer for {bootstrap}: {exc}; "
                "check the Kafka settings (MILLSTREAM_KAFKA_*)"
            ) from exc
        self.produced = 0  # readings handed to the producer
        self.delivered = 0  # readings the broker confirmed
        self.failed = 0  # readings Kafka gave up on
        self.frames = 0  # frames handed to the producer
        self.last_error: str | None = None  # the last error of any kind
        self.last_delivery_error: str | None = None  # the last frame Kafka gave up on
        self._backlog: deque[ReadingFrame] = deque()  # frames the local queue had no room for
        self._closed = False
        self._quiet: set[int] = set()  # client error codes logged since the last delivery

    @property
    def backlog(self) -> int:
        """Readings waiting for room in the producer's local queue."""
        return sum(len(f) for f in self._backlog)

    def publish(self, frame: ReadingFrame) -> None:
        """Hand one frame to Kafka; kept in order behind any backlog if the queue is full."""
        self._backlog.append(frame)
        self._drain()

    def send(self, value: bytes, key: bytes, n: int,
             on_done: Callable[[KafkaError | None], None]) -> bool:
        """Produce one encoded frame of ``n`` readings with no backlog of its own (the spool
        is the backlog): False when the local queue is full (``poll()``, then try again).
        ``on_done(None)`` once Kafka confirmed it (counted delivered), else ``on_done(err)``
        (not counted failed: the caller retries it or gives it up)."""
        try:
            self._producer.produce(self.topic, value=value, key=key,
                                   on_delivery=functools.partial(self._on_sent, n, on_done))
        except BufferError:
            return False
        except KafkaException as exc:  # refused outright (too large, fatal)
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            on_done(err or KafkaError(KafkaError._FAIL, str(exc)))
            return True
        self.produced += n
        self.frames += 1
        return True

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks and retry the backlog."""
        self._producer.poll(timeout)
        self._drain()

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s for every frame to be confirmed; returns how many remain."""
        self._drain()
        remaining = int(self._producer.flush(timeout))
        if self._backlog:
            self._drain()
            remaining = int(self._producer.flush(max(timeout / 10, 0.1))) + len(self._backlog)
        if remaining:
            logger.warning("%d frame(s) to %s not confirmed after %.1f s", remaining, self.topic,
                           timeout)
        return remaining

    def close(self) -> None:
        """Give up on what is still unconfirmed (counted as failed) and release the client."""
        if self._closed:
            return
        self._closed = True
        for frame in self._backlog:
            self._on_delivery(len(frame), "never handed to Kafka (closed)", None)
        self._backlog.clear()
        failed = self.failed
        if len(self._producer):
            self._producer.purge()
            self._producer.poll(0)
        self._producer.close()
        if self.failed > failed:
            logger.error("gave up on %d reading(s) for %s that Kafka had not confirmed",
                         self.failed - failed, self.topic)

    def _drain(self) -> None:
        while self._backlog:
            frame = self._backlog[0]
            n = len(frame)
            try:
                self._producer.produce(
                    self.topic,
                    value=frame.encode(),
                    key=frame.key(),
                    on_delivery=functools.partial(self._on_delivery, n),
                )
            except BufferError:
                return  # the local queue is full; poll() retries
            except KafkaException as exc:  # refused outright (too large, fatal): never retried
                self._backlog.popleft()
                self._on_delivery(n, exc.args[0] if exc.args else str(exc), None)
                continue
            self._backlog.popleft()
            self.produced += n
            self.frames += 1

    def _on_sent(self, n: int, on_done: Callable[[KafkaError | None], None],
                 err: KafkaError | None, _msg: Message | None) -> None:
        if err is None:
            self.delivered += n
            self._quiet.clear()
        else:
            self.last_error = (f"Kafka did not confirm a frame of {n} readings for "
                               f"{self.topic}: {err}")
        on_done(err)

    def _on_delivery(self, n: int, err: KafkaError | str | None, _msg: Message | None) -> None:
        if err is None:
            self.delivered += n
            self._quiet.clear()
            return
        self.failed += n
        self.last_error = self.last_delivery_error = (
            f"Kafka did not accept a frame of {n} readings for {self.topic}: {err}"
        )
        if not self._closed:  # close() sums up what it gave up on in one line
            logger.error("%s", self.last_error)

    def _on_error(self, err: KafkaError) -> None:
        message = explain_kafka_error(err.code(), err.str(), self.bootstrap, self._login)
        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            message += ("; is Kafka running? start it with `millstream kafka`, or set "
                        "MILLSTREAM_KAFKA_BOOTSTRAP (readings wait in the producer meanwhile)")
        if err.code() not in self._quiet:  # the client repeats itself while a broker is down
            self._quiet.add(err.code())
            logger.warning("%s", message)
        self.last_error = message
