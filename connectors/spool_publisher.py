"""Store and forward: every frame goes to the disk spool first, then to Kafka from there.

Write-ahead, not spill-on-trouble: a frame is in the spool (one ``write(2)``, so in the
page cache) before Kafka sees it, and its record is settled only when Kafka confirmed it.
A connector killed at any moment therefore finds every frame it had framed in the spool
on restart and sends what Kafka had not confirmed; a frame confirmed just before the
kill is sent again, which (source, epoch, seq) shows as a repeat. Spill-on-trouble would
lose the frames librdkafka held in memory when the process died.

Frames go out in spool order, at most ``inflight_bytes`` / ``inflight_frames`` at a time;
the rest waits on disk, so librdkafka never holds an unbounded backlog. A frame Kafka did
not confirm (a broker away for longer than ``message.timeout.ms``) is sent again, in
order, once nothing is in flight; a frame Kafka refuses outright (too large) is counted
failed and settled.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from connectors.publisher import ReadingPublisher
from connectors.spool import Spool
from connectors.spool_segment import SpoolRecord
from schemas.events import now_ms
from schemas.readings import ReadingFrame

__all__ = ["GapHandler", "SpoolPublisher"]

logger = logging.getLogger(__name__)

GapHandler = Callable[[str, int, str], None]  # (tag, ts, reason): emit a BAD gap marker

_PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                        KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD})
_PENDING, _INFLIGHT, _OK, _FAILED = range(4)
BACKLOG_EVERY_S = 10.0  # how often the progress of sending a backlog is logged


@dataclass(slots=True)
class _Entry:
    record: SpoolRecord
    state: int = _PENDING
    sends: int = 0


class SpoolPublisher:
    """A :class:`~connectors.base.FramePublisher` that spools every frame before Kafka.

    Lifecycle as :class:`ReadingPublisher`: ``publish()``, ``poll()`` often, ``flush()``,
    ``close()``. ``gap_handler`` (set by the runner to the source's gap-marker emitter)
    receives one call per tag of readings a full spool dropped. ``blocked`` is True while
    a full spool under policy ``block`` holds frames in memory: the source stops reading.
    """

    def __init__(self, kafka: ReadingPublisher, spool: Spool, *,
                 inflight_bytes: int = 4 << 20, inflight_frames: int = 256) -> None:
        self.kafka = kafka
        self.spool = spool
        self.inflight_bytes = max(1, min(inflight_bytes, spool.config.max_bytes // 4))
        self.inflight_frames = inflight_frames
        self.gap_handler: GapHandler | None = None
        self.delivered = 0  # readings of this session's frames Kafka confirmed
        self.replayed = 0  # readings of earlier sessions' frames Kafka confirmed
        self.failed = 0  # readings Kafka refused for good
        self.frames = 0  # frames handed to Kafka (first sends)
        self.retries = 0  # frames sent again after Kafka did not confirm them
        self.held: deque[ReadingFrame] = deque()  # policy block: frames waiting for room
        self._window: deque[_Entry] = deque()
        self._window_bytes = 0
        self._inflight = self._failed = 0
        self._epochs: set[int] = set()
        self._closing = False
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._backlog: tuple[float, int] | None = None  # (last said, confirmed then)

    @property
    def last_error(self) -> str | None:
        return self.kafka.last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self.kafka.last_error = value

    @property
    def blocked(self) -> bool:
        return bool(self.held)

    # -- FramePublisher ------------------------------------------------------------------
    def publish(self, frame: ReadingFrame) -> None:
        """Spool the frame (held in memory while a ``block`` spool is full), then pump."""
        self._epochs.add(frame.epoch)
        if self.held or not self._spool(frame):
            if not self.held:
                logger.warning("spool %s is full (policy block): holding frames in memory and "
                               "asking the source to stop reading until Kafka catches up",
                               self.spool.folder)
            self.held.append(frame)
        self._pump()

    def poll(self, timeout: float = 0.0) -> None:
        self.kafka.poll(timeout)
        while self.held and self._spool(self.held[0]):
            self.held.popleft()
        self._pump()
        self._report_gaps()
        self._report_backlog()

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s until Kafka confirmed everything spooled. Returns 0:
        what Kafka did not confirm stays in the spool for the next start, nothing is lost
        (except frames still held in memory by policy ``block``, which are counted)."""
        deadline = time.monotonic() + timeout
        while self.spool.counters.records or self.held:
            self.poll(0.05)
            if time.monotonic() > deadline:
                break
        left = self.spool.counters.records
        if left:
            logger.warning("%d frame(s), %d reading(s) not confirmed by Kafka stay in the "
                           "spool %s and are sent at the next start", left,
                           self.spool.counters.readings, self.spool.folder)
        return len(self.held)

    def close(self) -> None:
        """Release Kafka (what it did not confirm stays spooled) and close the spool."""
        if self._closing:
            return
        self._closing = True
        lost = sum(len(f) for f in self.held)
        if lost:
            self.failed += lost
            logger.error("gave up on %d reading(s) held in memory while the spool %s was full "
                         "(policy block)", lost, self.spool.folder)
        self.held.clear()
        self.kafka.close()
        self.spool.close()

    # -- status -------------------------------------------------------------------------
    def spool_status(self) -> dict[str, Any]:
        """The spool's part of the status file: size, age, replay rate, drops."""
        now = time.monotonic()
        t0, n0 = self._rate_mark
        confirmed = self.delivered + self.replayed
        if now - t0 >= 0.5:
            self._rate = (confirmed - n0) / (now - t0)
            self._rate_mark = (now, confirmed)
        oldest = next((e.record.written_ms for e in self._window if e.state != _OK), None)
        if oldest is None:
            oldest = self.spool.peek_written_ms()
        return {
            **self.spool.status(),
            "oldest_age_s": 0.0 if oldest is None else round(max(0, now_ms() - oldest) / 1000, 3),
            "replay_readings_per_s": round(self._rate, 1),
            "replayed": self.replayed,
            "inflight_frames": self._inflight,
            "retries": self.retries,
            "held_readings": sum(len(f) for f in self.held),
            "blocked": self.blocked,
        }

    # -- internals -----------------------------------------------------------------------
    def _spool(self, frame: ReadingFrame) -> bool:
        return self.spool.append(now_ms(), frame.epoch, frame.seq, len(frame), frame.key(),
                                 frame.encode())

    def _pump(self) -> None:
        while self._window and self._window[0].state == _OK:
            self._window_bytes -= self._window.popleft().record.size
        if self._failed:
            if self._inflight:
                return  # resend only once Kafka answered for every frame, to keep order
            for entry in self._window:
                if entry.state == _FAILED:
                    entry.state = _PENDING
                    self.retries += 1
            self._failed = 0
        while self._window_bytes < self.inflight_bytes and len(self._window) < self.inflight_frames:
            rec = self.spool.next_record()
            if rec is None:
                break
            self._window.append(_Entry(rec))
            self._window_bytes += rec.size
        for entry in self._window:
            if self._failed:
                return  # refused inside send(): resent in order on a later poll()
            if entry.state != _PENDING:
                continue
            if not self.kafka.send(entry.record.payload, entry.record.key, entry.record.count,
                                   functools.partial(self._on_done, entry)):
                return  # the local queue is full; the next poll() goes on
            if entry.state == _PENDING:  # not already refused outright inside send()
                entry.state = _INFLIGHT
                self._inflight += 1
            if entry.sends == 0:
                self.frames += 1
            entry.sends += 1

    def _on_done(self, entry: _Entry, err: KafkaError | None) -> None:
        if entry.state == _INFLIGHT:
            self._inflight -= 1
        rec = entry.record
        if err is None:
            entry.state = _OK
            if rec.epoch in self._epochs:
                self.delivered += rec.count
            else:
                self.replayed += rec.count
            self.spool.settle(rec)
        elif self._closing:
            entry.state = _FAILED  # purged on close: it stays in the spool
        elif err.code() in _PERMANENT:
            entry.state = _OK
            self.failed += rec.count
            self.spool.settle(rec)
            logger.error("Kafka refused a frame of %d readings (epoch %d seq %d) for good: %s",
                         rec.count, rec.epoch, rec.seq, err)
        else:
            entry.state = _FAILED
            self._failed += 1

    def _report_backlog(self) -> None:
        """A backlog (more frames spooled than one in-flight window: Kafka was away) is
        long work: say every BACKLOG_EVERY_S how much is left and how fast it goes, and
        when it is done."""
        every_s = BACKLOG_EVERY_S
        now, left = time.monotonic(), self.spool.counters.records
        confirmed = self.delivered + self.replayed
        if self._backlog is None:
            if left > self.inflight_frames:
                self._backlog = (now - every_s, confirmed)  # say it at once
            else:
                return
        said, before = self._backlog
        if left == 0:
            logger.info("spool %s: backlog sent, Kafka has confirmed every spooled frame",
                        self.spool.folder)
            self._backlog = None
        elif now - said >= every_s:
            rate = (confirmed - before) / max(now - said, 1e-6)
            logger.info("spool %s: sending the backlog to Kafka: %d frame(s), %d reading(s) "
                        "left, %.0f readings/s", self.spool.folder, left,
                        self.spool.counters.readings, rate)
            self._backlog = (now, confirmed)

    def _report_gaps(self) -> None:
        for run in self.spool.take_dropped():
            reason = (f"gap: spool full, {run.count} readings of epoch {run.epoch} "
                      f"seq {run.first_seq}..{run.last_seq} dropped")
            if self.gap_handler is None:
                continue
            for tag, ts in sorted(run.tags.items()):
                self.gap_handler(tag, ts, reason)
