"""The ceiling: a bare confluent-kafka consume+decode loop, no framework in between.

Also the decoders every consumer in the benchmark shares, so the Faust agents and the
bare loop do exactly the same work per message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer

from millstream.bench.workload import decode_reading
from schemas.readings import ReadingFrame

__all__ = ["Decode", "Run", "consume_raw", "count_frame", "count_reading"]

# decodes one message value and returns how many readings it carried
Decode = Callable[[bytes | None], int]


def count_reading(value: bytes | None) -> int:
    decode_reading(value or b"")
    return 1


def count_frame(value: bytes | None) -> int:
    frame = ReadingFrame.decode(value)
    frame.arrays()
    return len(frame)


@dataclass(frozen=True, slots=True)
class Run:
    """What one consumer did: readings from its first message to its last, and how long."""

    readings: int
    messages: int
    seconds: float  # from the first message received to the last reading handled
    completed: bool  # False: stopped by the time limit (or the consumer died) first
    note: str | None = None

    @property
    def per_s(self) -> float | None:
        return self.readings / self.seconds if self.seconds > 0 and self.readings else None


def consume_raw(bootstrap: str, topic: str, target: int, decode: Decode,
                conf: dict[str, str] | None = None, timeout: float = 120.0) -> Run:
    """Read ``topic`` from the start until ``target`` readings were decoded, or time is up."""
    c = Consumer({
        "bootstrap.servers": bootstrap, **(conf or {}),
        "group.id": f"millstream-bench-raw-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760,
    })
    readings = messages = 0
    first: float | None = None
    last = 0.0
    note = None
    deadline = time.monotonic() + timeout
    try:
        c.subscribe([topic])
        while readings < target and time.monotonic() < deadline:
            batch = c.consume(num_messages=10_000, timeout=0.5)
            if batch and first is None:
                first = time.perf_counter()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if not err.retriable() and err.fatal():
                        note = f"consumer error: {err}"
                        deadline = 0.0
                    continue
                readings += decode(msg.value())
                messages += 1
            last = time.perf_counter()
    finally:
        c.close()
    if readings < target and note is None:
        note = f"timed out after {timeout:.0f}s at {readings} of {target} readings"
    seconds = last - first if first is not None else 0.0
    return Run(readings, messages, seconds, readings >= target, note)
