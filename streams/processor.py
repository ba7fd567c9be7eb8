"""One Kafka message of the readings topic in; aggregates, late readings, anomalies,
commands and dead letters out.

:class:`FrameProcessor` is everything the worker does, without Faust: decode the frame
(rescuing the good readings of a partly bad one), ignore readings already processed
(sequence numbers), dead-letter what breaks the contract (unknown tags, values that are
not finite numbers, timestamps far ahead of the worker's clock), aggregate the rest into
windows of every configured size per (source, partition), route late readings, and hand
each closed window of the first size to the detectors and the alarm engine
(:mod:`streams.alarming`) and the rules. Limit rules that a single reading decides are
checked on every reading as it arrives (:mod:`streams.fastpath`). Operators' alarm actions
and false-positive feedback come in through :meth:`FrameProcessor.operator`. It never
raises on bad input.

Lifecycle: ``FrameProcessor(catalog)``; ``process(...)`` per message; ``tick(now_ms)`` on
a timer (closes windows of silent sources, expires shelving); ``flush(now_ms)`` at the end
of a run; ``counters()`` for the status file. ``snapshot(partition)``/``restore(snap,
partition)``/``drop(partition)`` hand one Kafka partition's state (windows, dedup,
detectors, alarm episodes, rules, KPI tallies) over as plain data: the unit a checkpoint
saves and a rebalance moves.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.aggregates import AggregateFrame
from schemas.alarms import Alarm
from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, DeadLetter
from schemas.exceptions import ContractError
from schemas.late import LateReadings
from streams.alarming import AlarmStage
from streams.assets import AssetIndex
from streams.decode import DecodedFrame, decode_frame
from streams.dedup import SeqDedup
from streams.exceptions import AlarmActionError, StateVersionError
from streams.fastpath import FastPath
from streams.plant import PlantState
from streams.results import Output, frame_of
from streams.rules import RuleEngine
from streams.spc_stage import SpcStage
from streams.windows import Closed, WindowStore

__all__ = ["STAGE", "FrameProcessor", "Output"]

logger = logging.getLogger(__name__)

STAGE = "streams"
# the order reasons are listed in when one frame has readings dead-lettered for several
STATE_VERSION = 2  # of snapshot()'s layout; 2: windows carry their unfolded frames
_READABLE = (1, STATE_VERSION)  # a layout-1 snapshot is one without unfolded frames
_REASONS = ("unknown-tag", "future-timestamp", "non-finite-value", "non-numeric-value",
            "bad-timestamp", "bad-quality", "bad-tag")


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
        self.rules = RuleEngine(catalog, [r for r in catalog.rules if not r.per_reading])
        self.ruled_tags = frozenset(catalog.resolve(r.tag) for r in catalog.rules
                                    if not r.per_reading)
        self._known_lists: dict[str, list[str]] = {}  # per source: last all-known tag list
        self.alarming = AlarmStage(catalog, self.rules)
        self.fastpath = FastPath(catalog, [r for r in catalog.rules if r.per_reading])
        self.plant = PlantState(catalog)  # the twin's share of the readings, and the KPIs
        self.spc = SpcStage(catalog)  # control charts of the catalog's characteristics
        self.count: Counter[str] = Counter()  # everything counters() reports
        self.dead_readings: Counter[str] = Counter()  # dead-lettered readings by reason
        self.sources: dict[int, set[str]] = {}  # per partition, the sources it carried

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
        self.sources.setdefault(partition, set()).add(frame.source)
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
                                 frame.value[idx], frame.quality[idx], frame.seq[idx],
                                 text=[frame.text[i] for i in idx.tolist()] if frame.text
                                 else None)
        if not frame.tag:
            return
        out.spc.extend(self.spc.observe(frame, partition, now_ms))
        res = self.windows.add((frame.source, partition), frame.tag, frame.ts, frame.value,
                               frame.quality, frame.seq, now_ms)
        self.count["bad_quality"] += res.bad_quality
        if self.fastpath.watches(frame.source):
            self._fast(frame, res.late, now_ms, out)
        if res.late is not None:
            self._late(frame, res.late, res.missed_ms, partition, offset, out)
        self._closed(res.closed, now_ms, out)
        out.twin, out.kpis = self.plant.observe(frame, partition, now_ms)

    def _fast(self, frame: DecodedFrame, late: np.ndarray | None, now_ms: int,
              out: Output) -> None:
        cmds = self.fastpath.evaluate(frame.tag, frame.ts, frame.value, frame.quality, late,
                                      now_ms)
        out.commands.extend(cmds)
        self.count["commands"] += len(cmds)

    def _fresh(self, frame: DecodedFrame, topic: str, partition: int,
               offset: int) -> npt.NDArray[np.bool_]:
        """Which decoded readings were not processed before; drops rejected readings
        already processed from ``frame.rejected`` (a redelivery is not dead-lettered
        twice). Duplicates are counted and logged with the reason."""
        fresh, why = self.dedup.fresh_run(frame.source, frame.epoch, frame.first_seq,
                                          frame.size)
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
        last = self._known_lists.get(frame.source)
        if last is not None and (frame.tag is last or frame.tag == last):
            frame.tag = last  # the same list object: the windows recognise it by identity
        elif known.issuperset(frame.tag):
            self._known_lists[frame.source] = frame.tag
        else:
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
            made = frame_of(c)
            if made is None:
                continue
            frame, cols = made
            out.aggregate_frames.extend(frame.chunks(self.frame_rows))
            out._asset_parts.append((self.asset_index, frame, cols))
            self.count["aggregates"] += len(frame)
            if c.window_ms != self.primary_ms:
                continue
            out.primary.append(frame)
            found, alarms = self.alarming.observe(c, frame, now_ms)
            out.anomalies.extend(found)
            self.count["anomalies"] += len(found)
            self._rules(frame, found, now_ms, out)
            self._alarmed(alarms, now_ms, out)

    def _alarmed(self, alarms: list[Alarm], now_ms: int, out: Output) -> None:
        cmds = self.alarming.on_alarms(alarms, now_ms)
        out.alarms.extend(alarms)
        out.commands.extend(cmds)
        self.count["alarms"] += len(alarms)
        self.count["alarms_raised"] += sum(a.action == "raised" for a in alarms)
        self.count["commands"] += len(cmds)

    def operator(self, kind: str, value: bytes | None, topic: str, partition: int,
                 offset: int, now_ms: int) -> tuple[Output, int]:
        """An operator's alarm action (``kind`` "action": ack/shelve/unshelve) or feedback
        ("feedback": false positive), and the partition whose state it changed: the one
        holding the alarm's machine. One that cannot apply (malformed, unknown alarm,
        machine not held here) is dead-lettered with the reason (and ``partition``)."""
        out = Output()
        try:
            alarms, owner = self.alarming.apply(kind, value, now_ms, self.sources)
        except ContractError as exc:
            self._dead(out, exc.reason, exc.detail, topic, partition, offset, None, value)
            return out, partition
        except AlarmActionError as exc:
            self._dead(out, "alarm-action-refused" if kind == "action" else "feedback-refused",
                       str(exc), topic, partition, offset, None, value)
            return out, partition
        self.count["feedback"] += kind == "feedback"
        self._alarmed(alarms, now_ms, out)
        return out, owner


    def _rules(self, frame: AggregateFrame, found: list[Anomaly], now_ms: int,
               out: Output) -> None:
        """The rules on the windows of tags that have rules (one object per such window
        only), each with the anomalies the detector found in it, in window order."""
        ruled = self.ruled_tags
        rows = [i for i, t in enumerate(frame.tag) if t in ruled]
        if not rows:
            return
        by_window: dict[tuple[str, int], list[Anomaly]] = {}
        for a in found:
            by_window.setdefault((a.tag, a.window_start), []).append(a)
        w = frame.window_ms
        for i in rows:
            ws = frame.window_start[i]
            agg = Aggregate(frame.tag[i], ws, ws + w, frame.count[i], frame.min[i],
                            frame.max[i], frame.mean[i], frame.std[i], frame.first[i],
                            frame.last[i], w, frame.good_share[i])
            cmds = self.rules.evaluate(agg, by_window.get((agg.tag, ws), []), now_ms)
            out.commands.extend(cmds)
            self.count["commands"] += len(cmds)

    def _dead(self, out: Output, reason: str, detail: str, topic: str, partition: int,
              offset: int, key: bytes | None, value: bytes | None) -> None:
        self.count["deadletters"] += 1
        logger.warning("dead letter %s[%d]@%d: %s: %s", topic, partition, offset, reason,
                       detail[:200])
        out.deadletters.append(DeadLetter.of(
            stage=STAGE, reason=reason, detail=detail, topic=topic, partition=partition,
            offset=offset, key=key, value=value,
        ))

    def tick(self, now_ms: int, partition: int | None = None) -> Output:
        """Close the windows of sources that went silent, and fire the fast path's held
        breaches whose cooldown is over (processing-time timer), of one partition or of
        all."""
        out = Output()
        self._closed(self.windows.close_idle(now_ms, partition), now_ms, out)
        tags = None if partition is None else self._owned(partition)[1]
        out.commands.extend(cmds := self.fastpath.tick(now_ms, tags))
        self.count["commands"] += len(cmds)
        sources = None if partition is None else self._owned(partition)[0]
        self._alarmed(self.alarming.tick(now_ms, sources), now_ms, out)
        out.twin, out.kpis = self.plant.tick(now_ms, partition)
        out.spc.extend(self.spc.tick(now_ms, partition))
        return out

    def flush(self, now_ms: int, partition: int | None = None) -> Output:
        """Close every open window, of one partition or of all (the end of a run)."""
        out = Output()
        self._closed(self.windows.flush_all(partition), now_ms, out)
        out.spc.extend(self.spc.flush(now_ms, partition))
        return out

    @property
    def frames(self) -> int:
        return self.count["frames"]

    @property
    def readings(self) -> int:
        return self.count["readings"]

    def counters(self) -> dict[str, Any]:
        keys = ("frames", "readings", "late", "bad_quality", "duplicates", "deadletters",
                "aggregates", "anomalies", "commands", "alarms", "alarms_raised", "feedback")
        return {**{k: self.count[k] for k in keys},
                "alarms_open": self.alarming.alarms.open_count,
                "detection_errors": self.alarming.errors,
                "dead_readings": dict(self.dead_readings), **self.plant.counters(),
                "fastpath": self.fastpath.counters(),
                "spc": self.spc.counters(),
                "open_windows": self.windows.open_windows}

    # -- persistence --------------------------------------------------------------------
    def _config(self) -> list[Any]:
        return [[[w.size_ms, w.hop_ms] for w in self.window_specs], self.windows.lateness_ms]

    def _owned(self, partition: int | None) -> tuple[set[str], set[str]]:
        """The sources and tags of ``partition`` (or of all partitions)."""
        if partition is None:
            return {s for ss in self.sources.values() for s in ss}, self.windows.tags()
        sources = set(self.sources.get(partition, ()))
        sources.update(k[0] for k in self.windows.keys(partition))
        return sources, self.windows.tags(partition)

    def snapshot(self, partition: int | None = None, *, arrays: bool = False) -> dict[str, Any]:
        """The state of one partition (or all) as plain data: its windows, the sequence
        numbers seen of its sources, its sources' detectors and their machines' alarms, and
        the rules' memory of its tags.
        Strict JSON, unless ``arrays`` keeps the window columns as NumPy arrays (then
        encode it before the next ``process``: they are the live arrays)."""
        sources, tags = self._owned(partition)
        return {"version": STATE_VERSION, "config": self._config(),
                "windows": self.windows.snapshot(partition, arrays=arrays),
                "sources": sorted(sources), "dedup": self.dedup.snapshot(sources),
                "alarming": self.alarming.snapshot(sources, strict=not arrays),
                "rules": self.rules.snapshot(tags),
                "fastpath": self.fastpath.snapshot(tags),
                "plant": self.plant.snapshot(partition, arrays=arrays),
                "spc": self.spc.snapshot(partition)}

    def restore(self, snap: dict[str, Any], partition: int | None = None,
                now_ms: int | None = None) -> None:
        """Take a :meth:`snapshot`: all state, or one partition's (the others are kept);
        ``now_ms`` restarts the idle timeout of the restored sources.
        Refuses a snapshot of another layout or window configuration with
        :class:`StateVersionError`: its windows would not line up with these."""
        if snap.get("version") not in _READABLE:
            raise StateVersionError("the window state", f"layout {snap.get('version')}",
                                    f"layout {STATE_VERSION}")
        if snap["config"] != self._config():
            raise StateVersionError(
                "the window state", f"windows [size, hop] and lateness {snap['config']}",
                f"{self._config()} in the catalog")
        whole = partition is None
        if partition is not None:
            self.drop(partition)
        self.windows.restore(snap["windows"], partition, now_ms)
        self.dedup.restore(snap["dedup"], replace=whole)
        if "alarming" in snap:
            self.alarming.restore(snap["alarming"], replace=whole)
        else:  # a checkpoint from before alarms: the detectors warm up again
            logger.warning("the saved state has no detector or alarm state: the detectors "
                           "of its sources warm up again")
        self.rules.restore(snap["rules"], replace=whole)
        self.fastpath.restore(snap.get("fastpath", {}), replace=whole)
        self.plant.restore(snap.get("plant"), partition, now_ms)
        self.spc.restore(snap.get("spc", {}), replace=whole)
        if whole:
            self.sources = {}
        for doc in snap["windows"]["streams"]:
            self.sources.setdefault(int(doc["partition"]), set()).add(doc["source"])
        if partition is not None:
            self.sources.setdefault(partition, set()).update(snap["sources"])

    def drop(self, partition: int) -> None:
        """Forget a partition's state (it moved to another worker). Sources and tags that
        another partition held here still carries are kept."""
        sources, tags = self._owned(partition)
        self.windows.drop(partition)
        self.sources.pop(partition, None)
        others_sources, others_tags = self._owned(None)
        self.dedup.drop(sources - others_sources)
        self.alarming.drop(sources - others_sources)
        self.rules.drop(tags - others_tags)
        self.fastpath.drop(tags - others_tags)
        self.plant.drop(partition)
        self.spc.drop(partition)


def _rank(reason: str) -> int:
    return _REASONS.index(reason) if reason in _REASONS else len(_REASONS)
