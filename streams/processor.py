"""One Kafka message of the readings topic in, aggregates/anomalies/commands/dead letters out.

:class:`FrameProcessor` is everything the worker does, without Faust: decode the frame,
dead-letter what breaks the contract, aggregate the known readings into tumbling windows,
score each closed window, run the rules. It never raises on bad input.

Lifecycle: ``FrameProcessor(catalog)``; ``process(...)`` per message; ``tick(now_ms)`` on
a timer (closes windows of silent sources); ``flush(now_ms)`` on shutdown;
``counters()`` for the status file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, Command, DeadLetter
from schemas.exceptions import ContractError
from schemas.readings import ReadingFrame
from streams.detect import WindowDetector, detector_from_catalog
from streams.rules import RuleEngine
from streams.windows import TumblingWindows

__all__ = ["STAGE", "FrameProcessor", "Output"]

logger = logging.getLogger(__name__)

STAGE = "streams"


@dataclass
class Output:
    """What processing one message (or a timer tick) produced, for the output topics."""

    aggregates: list[Aggregate] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.aggregates or self.anomalies or self.commands or self.deadletters)


class FrameProcessor:
    """The streams stage's logic for one worker (its assigned partitions)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.known_tags = frozenset(catalog.tags())
        self.windows = TumblingWindows(catalog.streams.window_ms, catalog.streams.lateness_ms)
        self.detector: WindowDetector = detector_from_catalog(catalog)
        self.rules = RuleEngine(catalog)
        self.frames = 0
        self.readings = 0
        self.late = 0
        self.bad_quality = 0
        self.deadletters = 0
        self.aggregates = 0
        self.anomalies = 0
        self.commands = 0

    def process(self, key: bytes | None, value: bytes | None, topic: str, partition: int,
                offset: int, now_ms: int) -> Output:
        out = Output()
        try:
            self._process(key, value, topic, partition, offset, now_ms, out)
        except Exception as exc:  # a bad message never kills the worker
            logger.exception("frame at %s[%d]@%d failed", topic, partition, offset)
            self._dead(out, "processing-error", f"{type(exc).__name__}: {exc}",
                       topic, partition, offset, key, value)
        return out

    def _process(self, key: bytes | None, value: bytes | None, topic: str, partition: int,
                 offset: int, now_ms: int, out: Output) -> None:
        try:
            frame = ReadingFrame.decode(value)
        except ContractError as exc:
            self._dead(out, exc.reason, exc.detail, topic, partition, offset, key, value)
            return
        self.frames += 1
        self.readings += len(frame)
        arr = frame.arrays()
        tags = arr.tag
        ts, val, quality = arr.ts, arr.value, arr.quality
        known = self.known_tags
        if not all(t in known for t in tags):
            mask = np.fromiter((t in known for t in tags), dtype=bool, count=len(tags))
            unknown: dict[str, int] = {}
            for t, ok in zip(tags, mask.tolist(), strict=True):
                if not ok:
                    unknown[t] = unknown.get(t, 0) + 1
            n_bad = sum(unknown.values())
            listing = ", ".join(f"{t} ({n})" for t, n in sorted(unknown.items()))
            self._dead(out, "unknown-tag",
                       f"{n_bad} of {len(tags)} readings name tags not in the catalog: "
                       f"{listing}", topic, partition, offset, key, value)
            idx = np.flatnonzero(mask)
            tags = [tags[i] for i in idx.tolist()]
            ts, val, quality = ts[idx], val[idx], quality[idx]
        res = self.windows.add(frame.source, tags, ts, val, quality, now_ms)
        self.late += res.late
        self.bad_quality += res.bad_quality
        self._closed(res.closed, now_ms, out)

    def _closed(self, aggs: list[Aggregate], now_ms: int, out: Output) -> None:
        for agg in aggs:
            if not (math.isfinite(agg.mean) and math.isfinite(agg.std)):
                # finite readings near the float64 limit overflow the sums: such a window
                # cannot be encoded (JSON has no inf) and would poison the detector
                logger.warning("window %s@%d dropped: its mean/std overflow float64 "
                               "(values of magnitude ~1e154 and above); check the "
                               "tag's scaling at the source", agg.tag, agg.window_start)
                continue
            found = self.detector.observe(agg, now_ms)
            cmds = self.rules.evaluate(agg, found, now_ms)
            out.aggregates.append(agg)
            out.anomalies.extend(found)
            out.commands.extend(cmds)
            self.anomalies += len(found)
            self.commands += len(cmds)
            self.aggregates += 1

    def _dead(self, out: Output, reason: str, detail: str, topic: str, partition: int,
              offset: int, key: bytes | None, value: bytes | None) -> None:
        self.deadletters += 1
        logger.warning("dead letter %s[%d]@%d: %s: %s", topic, partition, offset, reason,
                       detail[:200])
        out.deadletters.append(DeadLetter.of(
            stage=STAGE, reason=reason, detail=detail, topic=topic, partition=partition,
            offset=offset, key=key, value=value,
        ))

    def tick(self, now_ms: int) -> Output:
        """Close the windows of sources that went silent (processing-time timer)."""
        out = Output()
        self._closed(self.windows.close_idle(now_ms), now_ms, out)
        return out

    def flush(self, now_ms: int) -> Output:
        """Close every open window (shutdown)."""
        out = Output()
        self._closed(self.windows.flush_all(), now_ms, out)
        return out

    def counters(self) -> dict[str, int]:
        return {
            "frames": self.frames, "readings": self.readings, "late": self.late,
            "bad_quality": self.bad_quality, "deadletters": self.deadletters,
            "aggregates": self.aggregates, "anomalies": self.anomalies,
            "commands": self.commands, "open_windows": self.windows.open_windows,
        }
