"""Reading a topic back in tests: one consumer loop for every test that needs one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError

from schemas.readings import ReadingFrame

__all__ = ["at_least", "consume", "consume_frames"]


def consume(bootstrap: str, topic: str, *, until: Callable[[list[bytes]], bool] | None = None,
            timeout: float = 30.0, settle: float = 0.0) -> list[bytes]:
    """Message values on ``topic`` from the beginning, until ``until(values)`` holds (then
    ``settle`` s more, to catch extras) or ``timeout`` s passed. Without ``until``: every
    message that arrives within ``timeout`` s. Errors other than end-of-partition fail."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if until is not None and until(values):
                deadline = min(deadline, time.monotonic() + settle)
                until = None if settle else until
                if not settle:
                    break
            msg = consumer.poll(0.3)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                continue
            if msg.value() is not None:
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    return values


def at_least(readings: int) -> Callable[[list[bytes]], bool]:
    """An ``until`` for :func:`consume`: the frames so far hold ``readings`` readings
    (each frame is decoded once)."""
    seen = [0, 0]  # frames counted, readings in them

    def enough(values: list[bytes]) -> bool:
        for value in values[seen[0]:]:
            seen[1] += len(ReadingFrame.decode(value))
        seen[0] = len(values)
        return seen[1] >= readings
    return enough


def consume_frames(bootstrap: str, topic: str, readings: int, timeout: float = 30.0
                   ) -> list[ReadingFrame]:
    """Every frame on ``topic`` until ``readings`` readings arrived (or the timeout)."""
    values = consume(bootstrap, topic, until=at_least(readings), timeout=timeout)
    return [ReadingFrame.decode(v) for v in values]
