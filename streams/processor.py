"""One Kafka message of the readings topic in; aggregates, late readings, anomalies,
commands and dead letters out.

:class:`FrameProcessor` is everything the worker does, without Faust: decode the frame
(rescuing the good readings of a partly bad one), ignore readings already processed
(sequence numbers), dead-letter what breaks the contract (unknown tags, values that are
not finite numbers, timestamps far ahead of the worker's clock), aggregate the rest into
windows of every configured size per (source, partition), route late readings, and hand
each closed window of the first size to the detectors (:mod:`streams.detection`), their
evidence to the alarm engine (:mod:`streams.alarms`), and both to the rules. Operators'
alarm actions and false-positive feedback come in through ``action``/``feedback``. It
never raises on bad input.

Lifecycle: ``FrameProcessor(catalog)``; ``process(...)`` per message; ``tick(now_ms)`` on
a timer (closes windows of silent sources, expires shelving); ``flush(now_ms)`` on
shutdown; ``counters()`` for the status file; ``snapshot()``/``restore()`` for the window
state, ``detection_snapshot(sources)``/``detection_restore()`` for detectors and alarms.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.aggregates import AggregateFrame
from schemas.alarms import Alarm, AlarmAction, AnomalyFeedback
from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, Command, DeadLetter
from schemas.exceptions import ContractError
from schemas.late import LateReadings
from streams.alarms import AlarmEngine
from streams.assets import AssetIndex, AssetWindow
from streams.decode import DecodedFrame, decode_frame
from streams.dedup import SeqDedup
from streams.detection import DetectionLayer
from streams.exceptions import AlarmActionError
from streams.rules import RuleEngine
from streams.windows import Closed, WindowStore

__all__ = ["STAGE", "FrameProcessor", "Output"]

logger = logging.getLogger(__name__)

STAGE = "streams"
# the order reasons are listed in when one frame has readings dead-lettered for several
_REASONS = ("unknown-tag", "future-timestamp", "non-finite-value", "non-numeric-value",
            "bad-timestamp", "bad-quality", "bad-tag")


@dataclass
class Output:
    """What processing one message (or a timer tick) produced, for the output topics."""

    aggregate_frames: list[AggregateFrame] = field(default_factory=list)  # every size
    aggregates: list[Aggregate] = field(default_factory=list)  # first size: what rules read
    assets: list[AssetWindow] = field(default_factory=list)
    late: list[LateReadings] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)  # one per state change of an episode
    commands: list[Command] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.aggregate_frames or self.late or self.anomalies or self.alarms
                    or self.commands or self.deadletters)


class FrameProcessor:
    """The streams stage's logic for one worker (its assigned partitions)."""

    def __init__(self, catalog: Catalog) -> None:
        spec = catalog.streams
        self.catalog = catalog
        self.known_tags = frozenset(catalog.tags())
        self.window_specs = spec.window_specs()
        self.primary_ms = self.window_specs[0].size_ms
        self.future_ms = spec.future_ms
        self.frame_rows = spec.aggregate_frame_rows
        self.windows = WindowStore(self.window_specs, spec.lateness_ms, spec.idle_timeout_ms)
        self.dedup = SeqDedup(spec.dedup_tolerance)
        self.asset_index = AssetIndex(catalog)
        self.detection = DetectionLayer(catalog)
        self.alarms = AlarmEngine(catalog.alarms)
        self.rules = RuleEngine(catalog)
        self.count: Counter[str] = Counter()  # everything counters() reports
        self.dead_readings: Counter[str] = Counter()  # dead-lettered readings by reason

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
            frame = decode_frame(value)
        except ContractError as exc:
            self._dead(out, exc.reason, exc.detail, topic, partition, offset, key, value)
            return
        self.count["frames"] += 1
        self.count["readings"] += frame.size
        keep = self._fresh(frame, topic, partition, offset)
        problems = self._problems(frame, keep, now_ms)
        if problems:
            for reason, (n, _) in problems.items():
                self.dead_readings[reason] += n
            self._dead(out, "+".join(problems), "; ".join(d for _, d in problems.values()),
                       topic, partition, offset, key, value)
        if not keep.all():
            idx = np.flatnonzero(keep)
            frame = DecodedFrame(frame.source, frame.epoch, frame.first_seq, frame.size,
                                 [frame.tag[i] for i in idx.tolist()], frame.ts[idx],
                                 frame.value[idx], frame.quality[idx], frame.seq[idx])
        if not frame.tag:
            return
        res = self.windows.add((frame.source, partition), frame.tag, frame.ts, frame.value,
                               frame.quality, frame.seq, now_ms)
        self.count["bad_quality"] += res.bad_quality
        if res.late is not None:
            self._late(frame, res.late, res.missed_ms, partition, offset, out)
        self._closed(res.closed, now_ms, out)

    def _fresh(self, frame: DecodedFrame, topic: str, partition: int,
               offset: int) -> npt.NDArray[np.bool_]:
        """Which decoded readings were not processed before; drops rejected readings
        already processed from ``frame.rejected`` (a redelivery is not dead-lettered
        twice). Duplicates are counted and logged with the reason."""
        every = np.arange(frame.first_seq, frame.first_seq + frame.size, dtype=np.int64)
        fresh, why = self.dedup.fresh(frame.source, frame.epoch, every)
        if not why:
            return np.ones(len(frame.tag), bool)
        self.count["duplicates"] += frame.size - int(np.count_nonzero(fresh))
        logger.info("%s[%d]@%d: ignored %s", topic, partition, offset, why)
        for reason, pos in list(frame.rejected.items()):
            left = [i for i in pos if fresh[i]]
            if left:
                frame.rejected[reason] = left
            else:
                del frame.rejected[reason]
        return fresh[frame.seq - frame.first_seq]

    def _problems(self, frame: DecodedFrame, keep: np.ndarray,
                  now_ms: int) -> dict[str, tuple[int, str]]:
        """Readings to dead-letter, by reason: (count, detail). Clears them in ``keep``."""
        found: dict[str, tuple[int, str]] = {}
        for reason, idx in frame.rejected.items():
            found[reason] = (len(idx), f"{len(idx)} of {frame.size} readings have a "
                                       f"{reason.replace('-', ' ')} (positions {idx[:5]})")
        known = self.known_tags
        if not known.issuperset(frame.tag):
            mask = np.fromiter((t in known for t in frame.tag), bool, len(frame.tag))
            unknown = Counter(t for t, ok, k in zip(frame.tag, mask.tolist(), keep.tolist(),
                                                    strict=True) if k and not ok)
            listing = ", ".join(f"{t} ({n})" for t, n in sorted(unknown.items()))
            n = sum(unknown.values())
            if n:
                found["unknown-tag"] = (n, f"{n} of {frame.size} readings name tags not in "
                                           f"the catalog: {listing}")
            keep &= mask
        limit = now_ms + self.future_ms
        future = (frame.ts > limit) & keep
        if future.any():
            n = int(np.count_nonzero(future))
            found["future-timestamp"] = (n, (
                f"{n} of {frame.size} readings are stamped more than {self.future_ms} ms "
                f"ahead of the worker's clock ({now_ms}), up to {int(frame.ts.max())}; "
                "check the source's clock"))
            keep &= ~future
        return {r: found[r] for r in sorted(found, key=_rank)}

    def _late(self, frame: DecodedFrame, late: np.ndarray, missed: list[list[int]],
              partition: int, offset: int, out: Output) -> None:
        idx = np.flatnonzero(late)
        n = len(idx)
        self.count["late"] += n
        wm = self.windows.watermark((frame.source, partition)) or 0
        values = frame.value[idx]
        out.late.append(LateReadings(
            source=frame.source, epoch=frame.epoch, partition=partition, offset=offset,
            watermark=wm, lateness_ms=self.windows.lateness_ms,
            reason=(f"late: {n} of {frame.size} readings arrived after their window had "
                    f"closed (watermark {wm} = highest source ts - {self.windows.lateness_ms}"
                    " ms lateness, or moved on by the idle timeout)"),
            tag=[frame.tag[i] for i in idx.tolist()], ts=frame.ts[idx].tolist(),
            value=[None if v != v else v for v in values.tolist()],
            quality=frame.quality[idx].tolist(), seq=frame.seq[idx].tolist(),
            missed_ms=missed,
        ))

    def _closed(self, closed: list[Closed], now_ms: int, out: Output) -> None:
        for c in closed:
            frame = self._frame(c)
            if frame is None:
                continue
            out.aggregate_frames.extend(frame.chunks(self.frame_rows))
            out.assets.extend(self.asset_index.records(frame))
            self.count["aggregates"] += len(frame)
            if c.window_ms == self.primary_ms:
                self._detect(c, frame, now_ms, out)

    def _detect(self, c: Closed, frame: AggregateFrame, now_ms: int, out: Output) -> None:
        """Detectors, alarms and rules on one closed frame of the first window size."""
        s = c.stats
        bad = frozenset(c.tag[i] for i in np.flatnonzero((s.total > 0) & (s.n == 0)).tolist())
        by_tag: dict[str, list[Anomaly]] = {}
        alarms: list[Alarm] = []
        for ev in self.detection.observe(frame, bad, now_ms):
            for a in ev.anomalies:
                by_tag.setdefault(a.tag, []).append(a)
            out.anomalies.extend(ev.anomalies)
            self.count["anomalies"] += len(ev.anomalies)
            alarms += self.alarms.observe(ev, now_ms)
        for agg in frame.aggregates():
            cmds = self.rules.evaluate(agg, by_tag.get(agg.tag, ()), now_ms)
            out.aggregates.append(agg)
            out.commands.extend(cmds)
            self.count["commands"] += len(cmds)
        self._alarmed(alarms, now_ms, out)

    def _alarmed(self, alarms: list[Alarm], now_ms: int, out: Output) -> None:
        cmds = self.rules.on_alarms(alarms, now_ms)
        out.alarms.extend(alarms)
        out.commands.extend(cmds)
        self.count["alarms"] += len(alarms)
        self.count["commands"] += len(cmds)

    def action(self, value: bytes | None, topic: str, partition: int, offset: int,
               now_ms: int) -> Output:
        """An operator's ack/shelve/unshelve (alarm-actions topic); a refused or malformed
        one is dead-lettered with the reason."""
        out = Output()
        try:
            self._alarmed(self.alarms.act(AlarmAction.decode(value), now_ms), now_ms, out)
        except (ContractError, AlarmActionError) as exc:
            reason = exc.reason if isinstance(exc, ContractError) else "alarm-action-refused"
            detail = exc.detail if isinstance(exc, ContractError) else str(exc)
            self._dead(out, reason, detail, topic, partition, offset, None, value)
        return out

    def feedback(self, value: bytes | None, topic: str, partition: int, offset: int,
                 now_ms: int) -> Output:
        """An operator's false positive (anomaly-feedback topic): the episode closes and the
        thresholds of the detectors and tags that drove it go up."""
        out = Output()
        try:
            alarms, raises = self.alarms.false_positive(AnomalyFeedback.decode(value), now_ms)
        except (ContractError, AlarmActionError) as exc:
            reason = exc.reason if isinstance(exc, ContractError) else "feedback-refused"
            detail = exc.detail if isinstance(exc, ContractError) else str(exc)
            self._dead(out, reason, detail, topic, partition, offset, None, value)
            return out
        for detector, subject, times in raises:
            if not self.detection.raise_threshold(detector, subject, times):
                logger.warning("feedback: no detector %s on %s here to raise", detector,
                               subject)
        self.count["feedback"] += 1
        self._alarmed(alarms, now_ms, out)
        return out

    def _frame(self, c: Closed) -> AggregateFrame | None:
        s = c.stats
        with np.errstate(invalid="ignore", over="ignore"):
            std = np.sqrt(np.maximum(s.m2, 0.0) / np.maximum(s.n, 1))
            ok = (s.n > 0) & np.isfinite(s.mean) & np.isfinite(std)
        bad = int(np.count_nonzero((s.n > 0) & ~ok))
        if bad:
            # finite readings near the float64 limit overflow the sums: such a window
            # cannot be encoded (JSON has no inf) and would poison the detector
            logger.warning("%d windows of %s dropped: their mean/std overflow float64 "
                           "(values of magnitude ~1e154 and above); check the tags' "
                           "scaling at the source", bad, c.source)
        idx = np.flatnonzero(ok)
        if not len(idx):
            return None
        return AggregateFrame(
            c.source, c.window_ms, [c.tag[i] for i in idx.tolist()],
            c.window_start[idx].tolist(), s.n[idx].tolist(), s.min[idx].tolist(),
            s.max[idx].tolist(), s.mean[idx].tolist(), std[idx].tolist(),
            s.first[idx].tolist(), s.last[idx].tolist(),
            (s.good[idx] / s.total[idx]).tolist(),
        )

    def _dead(self, out: Output, reason: str, detail: str, topic: str, partition: int,
              offset: int, key: bytes | None, value: bytes | None) -> None:
        self.count["deadletters"] += 1
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
        self._alarmed(self.alarms.tick(now_ms), now_ms, out)
        return out

    def flush(self, now_ms: int) -> Output:
        """Close every open window (shutdown)."""
        out = Output()
        self._closed(self.windows.flush_all(), now_ms, out)
        return out

    @property
    def frames(self) -> int:
        return self.count["frames"]

    @property
    def readings(self) -> int:
        return self.count["readings"]

    def counters(self) -> dict[str, Any]:
        keys = ("frames", "readings", "late", "bad_quality", "duplicates", "deadletters",
                "aggregates", "anomalies", "alarms", "feedback", "commands")
        return {**{k: self.count[k] for k in keys},
                "alarm_episodes": self.alarms.raised, "alarms_open": self.alarms.open_count,
                "dead_readings": dict(self.dead_readings),
                "open_windows": self.windows.open_windows}

    def snapshot(self) -> dict[str, Any]:
        """Window and deduplication state as plain data (see :meth:`restore`)."""
        return {"windows": self.windows.snapshot(), "dedup": self.dedup.snapshot()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.windows.restore(snap["windows"])
        self.dedup.restore(snap["dedup"])

    def _machines(self, sources: Collection[str]) -> set[str]:
        return {self.catalog.machine_path(m) for s in sources for m in self.catalog.machines_of(s)}

    def detection_snapshot(self, sources: Collection[str] | None = None) -> dict[str, Any]:
        """Detectors and alarm episodes of the given sources (default all), plain data."""
        return {"detection": self.detection.snapshot(sources),
                "alarms": self.alarms.snapshot(None if sources is None
                                               else self._machines(sources))}

    def detection_restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Take a :meth:`detection_snapshot`: all state (``replace``) or its sources only."""
        self.detection.restore(snap["detection"], replace=replace)
        self.alarms.restore(snap["alarms"], replace=replace)

    def detection_drop(self, sources: Collection[str]) -> None:
        """Forget these sources' detectors and alarms (their partition moved)."""
        self.detection.drop(sources)
        self.alarms.drop(self._machines(sources))


def _rank(reason: str) -> int:
    return _REASONS.index(reason) if reason in _REASONS else len(_REASONS)
