"""What reached Kafka in ``millstream bench ingest``: frames read back and tallied.

A bare confluent-kafka consumer reads a topic from the start to its end and decodes every
frame (:meth:`ReadingFrame.decode`). The tallies are pure: :class:`SeqCheck` finds gaps
and repeats in each source's numbering, :class:`OpcUaTally` counts which of the server's
changes arrived per tag, :class:`ModbusTally` counts registers by poll time.
"""

from __future__ import annotations

import time
import uuid
from array import array
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.exceptions import MillstreamError
from schemas.readings import Quality, ReadingFrame

__all__ = ["ModbusTally", "OpcUaTally", "SeqCheck", "read_topic"]

# what a tally does with one frame and its Kafka CreateTime (Unix ms: when the connector
# handed it to the producer)
OnFrame = Callable[[ReadingFrame, int], None]


def read_topic(bootstrap: str, topic: str, on_frame: OnFrame, conf: dict[str, str] | None = None,
               timeout: float = 120.0) -> int:
    """Feed every frame of partition 0 of ``topic``, from the start to the end it has now,
    to ``on_frame``; returns the number of messages."""
    c = Consumer({"bootstrap.servers": bootstrap, **(conf or {}),
                  "group.id": f"millstream-bench-ingest-{uuid.uuid4().hex[:12]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52_428_800,
                  "max.partition.fetch.bytes": 10_485_760})
    messages = 0
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        offset = -1
        while offset + 1 < high:
            if time.monotonic() > deadline:
                raise MillstreamError(f"reading back {topic} stopped at offset {offset} of "
                                      f"{high} after {timeout:.0f}s; is Kafka overloaded?")
            for msg in c.consume(num_messages=1000, timeout=1.0):
                if msg.error() is not None:
                    continue
                offset = msg.offset() or 0
                messages += 1
                on_frame(ReadingFrame.decode(msg.value()), msg.timestamp()[1])
    finally:
        c.close()
    return messages


class SeqCheck:
    """Each (source, epoch)'s sequence numbers must run 1, 2, 3, ... without a gap."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}
        self.gaps = 0  # numbers that never arrived
        self.repeats = 0  # numbers that arrived again

    def add(self, frame: ReadingFrame) -> None:
        key = (frame.source, frame.epoch)
        expected = self.next.get(key, 1)
        if frame.seq > expected:
            self.gaps += frame.seq - expected
        elif frame.seq < expected:
            self.repeats += min(expected, frame.last_seq + 1) - frame.seq
        self.next[key] = max(expected, frame.last_seq + 1)


class OpcUaTally:
    """Which of the server's changes arrived: round k wrote the value k to every tag, so a
    tag's readings with values in [first, last] say which rounds it received."""

    def __init__(self, tags: list[str], first: int, last: int) -> None:
        self.first, self.last = first, last
        self.seen = {tag: bytearray(last - first + 1) for tag in tags}
        self.seq = SeqCheck()
        self.readings = 0  # every reading in the topic
        self.distinct = 0  # (tag, round) pairs received
        self.duplicates = 0  # the same (tag, round) again
        self.other = 0  # initial values, unknown tags, values outside the rounds
        self.bad = 0
        self.last_created_ms = 0  # CreateTime of the last frame with a change of this run
        self.latency_ms = array("q")  # CreateTime - source timestamp, per change

    def add(self, frame: ReadingFrame, created_ms: int) -> None:
        self.seq.add(frame)
        self.readings += len(frame)
        first, last, hit = self.first, self.last, False
        for tag, ts, value, quality in zip(frame.tag, frame.ts, frame.value, frame.quality,
                                           strict=True):
            if quality == Quality.BAD:
                self.bad += 1
            marks = self.seen.get(tag)
            if marks is None or value is None or not first <= value <= last:
                self.other += 1
                continue
            i = int(value) - first
            if marks[i]:
                self.duplicates += 1
                continue
            marks[i] = 1
            self.distinct += 1
            self.latency_ms.append(created_ms - ts)
            hit = True
        if hit:
            self.last_created_ms = max(self.last_created_ms, created_ms)

    def missing_by_round(self, top: int = 5) -> dict[str, int]:
        """How many tags missed each round, for the rounds missed most (where a loss sits:
        all tags of one round, or one subscription's tags, or scattered)."""
        counts = [0] * (self.last - self.first + 1)
        for marks in self.seen.values():
            for i, hit in enumerate(marks):
                if not hit:
                    counts[i] += 1
        worst = sorted((c, i) for i, c in enumerate(counts) if c)[::-1][:top]
        return {str(self.first + i): c for c, i in worst}

    def latency(self) -> dict[str, float] | None:
        """Percentiles of source timestamp -> handed to Kafka, in ms."""
        if not self.latency_ms:
            return None
        p50, p99, top = np.percentile(np.frombuffer(self.latency_ms, dtype=np.int64),
                                      [50, 99, 100])
        return {"p50": round(float(p50), 1), "p99": round(float(p99), 1),
                "max": round(float(top), 1)}


class ModbusTally:
    """GOOD readings and the registers they carry, by poll time (the readings' ts)."""

    def __init__(self, widths: Mapping[str, int]) -> None:
        self.widths = widths
        self.seq = SeqCheck()
        self.registers_at: dict[int, int] = {}
        self.readings_at: dict[int, int] = {}
        self.bad = 0

    def add(self, frame: ReadingFrame, _created_ms: int) -> None:
        self.seq.add(frame)
        widths, regs, reads = self.widths, self.registers_at, self.readings_at
        for tag, ts, quality in zip(frame.tag, frame.ts, frame.quality, strict=True):
            if quality != Quality.GOOD:
                self.bad += 1
                continue
            regs[ts] = regs.get(ts, 0) + widths.get(tag, 0)
            reads[ts] = reads.get(ts, 0) + 1

    def window(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Registers and readings polled in [start_ms, end_ms)."""
        regs = sum(n for ts, n in self.registers_at.items() if start_ms <= ts < end_ms)
        reads = sum(n for ts, n in self.readings_at.items() if start_ms <= ts < end_ms)
        return {"registers": regs, "readings": reads}
