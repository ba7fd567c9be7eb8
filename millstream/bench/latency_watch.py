"""What ``millstream bench latency`` sees on Kafka, and when it saw it.

One consumer thread reads four topics from their ends (no consumer group: partitions are
assigned, so it reads from the first message produced after it started): the readings of
the fast source (only frames keyed by it are decoded), the commands, the command results
and the anomalies. Each message is kept with the time it arrived here and the time its
producer stamped it (Kafka CreateTime), so a change can be followed hop by hop.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import OFFSET_END, Consumer, Message, TopicPartition

from schemas.events import Anomaly, Command, CommandResult
from schemas.exceptions import MillstreamError
from schemas.readings import ReadingFrame
from schemas.topics import Topics

__all__ = ["Seen", "Watcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Seen:
    """When a message arrived here, and when its producer stamped it (Unix ms)."""

    recv_ms: int
    kafka_ms: int


@dataclass
class _Found:
    breaches: dict[tuple[str, int], Seen] = field(default_factory=dict)  # (tag, ts)
    commands: dict[str, tuple[Command, Seen]] = field(default_factory=dict)  # by id
    results: list[tuple[CommandResult, Seen]] = field(default_factory=list)
    anomalies: list[tuple[Anomaly, Seen]] = field(default_factory=list)
    fast_readings: int = 0
    first_fast_ms: int | None = None


class Watcher:
    """Lifecycle: ``Watcher(...)``, ``start()``, read its state through the methods (thread
    safe), ``stop()``. ``bound``: readings of ``tags`` above it are breaches."""

    def __init__(self, bootstrap: str, conf: dict[str, str], topics: Topics, source: str,
                 tags: Iterable[str], bound: float) -> None:
        self.topics, self.key, self.tags, self.bound = topics, source.encode(), set(tags), bound
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, **conf, "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "fetch.wait.max.ms": 100,
        })
        self._found = _Found()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-watch", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        names = [self.topics.readings, self.topics.commands, self.topics.command_results,
                 self.topics.anomalies]
        meta = self._consumer.list_topics(timeout=30).topics
        missing = [n for n in names if n not in meta]
        if missing:
            raise MillstreamError(f"benchmark topics {missing} do not exist on Kafka")
        self._consumer.assign([TopicPartition(n, p, OFFSET_END) for n in names
                               for p in meta[n].partitions])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        handlers: dict[str, Callable[[Message, Seen], None]] = {
            self.topics.readings: self._reading, self.topics.commands: self._command,
            self.topics.command_results: self._result, self.topics.anomalies: self._anomaly,
        }
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            if msg is None:
                continue
            recv = int(time.time() * 1000)
            if msg.error() is not None:
                self.errors.append(str(msg.error()))
                continue
            try:
                with self._cond:
                    handlers[msg.topic() or ""](msg, Seen(recv, msg.timestamp()[1]))
                    self._cond.notify_all()
            except Exception as exc:  # a message we cannot read is reported, not fatal
                self.errors.append(f"{msg.topic()}@{msg.offset()}: {exc!r}")

    def _reading(self, msg: Message, seen: Seen) -> None:
        if msg.key() != self.key:
            return
        frame = ReadingFrame.decode(msg.value())
        found = self._found
        found.fast_readings += len(frame)
        if found.first_fast_ms is None:
            found.first_fast_ms = seen.recv_ms
        for tag, ts, value in zip(frame.tag, frame.ts, frame.value, strict=True):
            if tag in self.tags and value is not None and value > self.bound:
                found.breaches.setdefault((tag, ts), seen)

    def _command(self, msg: Message, seen: Seen) -> None:
        cmd = Command.decode(msg.value())
        self._found.commands[cmd.command_id] = (cmd, seen)

    def _result(self, msg: Message, seen: Seen) -> None:
        self._found.results.append((CommandResult.decode(msg.value()), seen))

    def _anomaly(self, msg: Message, seen: Seen) -> None:
        self._found.anomalies.append((Anomaly.decode(msg.value()), seen))

    # -- what it saw -----------------------------------------------------------------------
    def fast_readings(self) -> tuple[int, int | None]:
        """Readings of the fast source seen, and when the first arrived."""
        with self._cond:
            return self._found.fast_readings, self._found.first_fast_ms

    def wait_result(self, setpoint: str, since_ms: int, timeout_s: float,
                    ) -> tuple[CommandResult, Seen, Command, Seen] | None:
        """The first result for ``setpoint`` of a command issued at or after ``since_ms``,
        with that command; None after ``timeout_s``."""
        def find() -> tuple[CommandResult, Seen, Command, Seen] | None:
            for result, seen in self._found.results:
                got = self._found.commands.get(result.command_id)
                if (result.setpoint == setpoint and got is not None
                        and got[0].issued_at >= since_ms):
                    return result, seen, got[0], got[1]
            return None

        return self._wait(find, timeout_s)

    def breach(self, tag: str, ts: int) -> Seen | None:
        with self._cond:
            return self._found.breaches.get((tag, ts))

    def anomaly(self, tag: str, ts: int) -> tuple[Anomaly, Seen] | None:
        """The first anomaly of ``tag`` to arrive whose window holds ``ts``."""
        with self._cond:
            hits = [(a, s) for a, s in self._found.anomalies
                    if a.tag == tag and a.window_start <= ts < a.window_end]
        return min(hits, key=lambda hit: hit[1].recv_ms, default=None)

    def counts(self) -> dict[str, int]:
        with self._cond:
            f = self._found
            return {"commands": len(f.commands), "results": len(f.results),
                    "anomalies": len(f.anomalies), "fast_readings": f.fast_readings}

    def _wait(self, find: Callable[[], T | None], timeout_s: float) -> T | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (hit := find()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return hit
