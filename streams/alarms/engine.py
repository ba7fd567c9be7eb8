"""From anomalies to alarm episodes per machine: delay-on, hysteresis, delay-off, ISA-18.2.

:class:`AlarmEngine` reads each machine's windows in order (:class:`AssetEvidence`: the
highest score of any detector in that window, the anomalies, whether the machine runs):

- **delay-on**: an episode opens when ``on_windows`` of the machine's last
  ``within_windows`` windows scored above ``on_score`` (1 is a detector's own threshold:
  an alarm asks for clearer evidence than an anomaly record);
- **hysteresis and delay-off**: it clears after ``off_windows`` windows in a row that
  scored below ``clear_score`` (or not at all); a window between the two keeps it going;
- **states**: active (unacknowledged), acknowledged, cleared (returned to normal,
  unacknowledged), closed; shelved by an operator for a while; suppressed while the machine
  is not running (no new episode opens then, and one that clears needs no acknowledgement);
- one :class:`Alarm` record per change, each with the next ``version``.

Operators act through :meth:`act` (ack, shelve, unshelve) and :meth:`false_positive`,
which closes the episode and returns the thresholds to raise (detector, subject, factor).
Time: windows (event time) drive delay-on and delay-off; ``now_ms`` (processing time)
stamps records and expires shelving (:meth:`tick`). No I/O and no clock of its own, so a
benchmark can drive it faster than real time.

Lifecycle: ``AlarmEngine(spec)``; ``observe(evidence, now_ms)`` per machine window, in
window order; ``act``/``false_positive`` on operator messages; ``tick(now_ms)`` on a timer;
``snapshot(assets)``/``restore(snap, replace=)``/``drop(assets)``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.alarms import Alarm, AlarmAction, AnomalyFeedback, OperatorAction
from schemas.catalog import AlarmSpec
from schemas.events import Anomaly
from streams.alarms.episode import Episode, severity_of
from streams.detection.layer import AssetEvidence
from streams.exceptions import AlarmActionError, StateVersionError

__all__ = ["ACTOR", "AlarmEngine", "alarm_id"]

logger = logging.getLogger(__name__)

ACTOR = "streams"  # who the worker's own changes are by
KEEP_DONE = 1000  # finished episodes kept for late acknowledgements and feedback


def alarm_id(asset: str, started_at: int) -> str:
    """A machine has at most one episode starting at a given window, so the two name it:
    the same episode raised again after a crash (a replay) keeps its id."""
    return hashlib.blake2b(f"{asset}\0{started_at}".encode(), digest_size=16).hexdigest()


@dataclass
class _Point:
    """One machine's alarm point: recent windows, the open episode, shelving."""

    recent: deque[bool] = field(default_factory=deque)  # anomalous, last within_windows
    pending: deque[tuple[int, list[Anomaly]]] = field(default_factory=deque)  # (start, ...)
    episode: Episode | None = None
    quiet: int = 0  # windows in a row below clear_score while an episode is active
    shelved_until: int | None = None
    suppressed: bool = False


class AlarmEngine:
    """Alarm episodes of the machines whose evidence it is given."""

    def __init__(self, spec: AlarmSpec | None = None) -> None:
        self.spec = spec or AlarmSpec()
        self._points: dict[str, _Point] = {}
        self._done: OrderedDict[str, Episode] = OrderedDict()  # cleared or closed
        self.raised = 0
        self.records = 0

    # -- evidence -----------------------------------------------------------------------

    def observe(self, ev: AssetEvidence, now_ms: int) -> list[Alarm]:
        """One window of one machine; the records of the changes it caused."""
        spec = self.spec
        p = self._points.setdefault(ev.asset, _Point())
        out: list[Alarm] = []
        suppressed = ev.running is False
        if suppressed != p.suppressed:
            p.suppressed = suppressed
            if p.episode is not None:
                why = "the machine stopped" if suppressed else "the machine runs again"
                out.append(self._emit(ev.asset, p, p.episode, "suppressed" if suppressed
                                      else "unsuppressed", ACTOR, why, now_ms))
        hot = bool(np.isfinite(ev.score) and ev.score > spec.on_score)
        cold = not (np.isfinite(ev.score) and ev.score >= spec.clear_score)
        p.recent.append(hot)
        p.pending.append((ev.window_start, list(ev.anomalies)))
        while len(p.recent) > spec.within_windows:
            p.recent.popleft()
            p.pending.popleft()
        ep = p.episode
        if ep is None:
            if not suppressed and sum(p.recent) >= spec.on_windows:
                out.append(self._open(ev, p, now_ms))
            return out
        before = ep.severity
        ep.absorb(ev.anomalies, ev.window_end)
        ep.severity = max(before, severity_of(ep.peak, spec), key=_RANK.index)
        p.quiet = 0 if not cold else p.quiet + 1
        if p.quiet >= spec.off_windows:
            out.append(self._clear(ev.asset, p, ep, now_ms))
        elif ep.severity != before:
            out.append(self._emit(ev.asset, p, ep, "escalated", ACTOR,
                                  f"severity {before} -> {ep.severity}", now_ms))
        return out

    def _open(self, ev: AssetEvidence, p: _Point, now_ms: int) -> Alarm:
        first = next(start for (start, _), hot in zip(p.pending, p.recent, strict=True) if hot)
        ep = Episode(alarm_id=alarm_id(ev.asset, first), asset=ev.asset, started_at=first,
                     last_hot_end=ev.window_end)
        for start, found in p.pending:
            ep.absorb(found, start + (ev.window_end - ev.window_start))
        ep.severity = severity_of(ep.peak, self.spec)
        p.episode, p.quiet = ep, 0
        self.raised += 1
        n = sum(p.recent)
        rec = self._emit(ev.asset, p, ep, "raised", ACTOR,
                         f"{n} of the last {len(p.recent)} windows anomalous", now_ms)
        logger.info("alarm %s raised on %s: %s", ep.alarm_id, ev.asset, rec.message)
        return rec

    def _clear(self, asset: str, p: _Point, ep: Episode, now_ms: int) -> Alarm:
        ep.active = False
        ep.ended_at = ep.last_hot_end
        # shelved or suppressed alarms were never in front of an operator: nothing to ack
        ep.closed = ep.acknowledged or p.shelved_until is not None or p.suppressed
        p.episode, p.quiet = None, 0
        p.recent.clear()
        p.pending.clear()
        self._keep(ep)
        note = f"{self.spec.off_windows} windows in a row below {self.spec.clear_score:g}"
        return self._emit(asset, p, ep, "closed" if ep.closed else "cleared", ACTOR, note,
                          now_ms)

    def _emit(self, asset: str, p: _Point, ep: Episode, action: str, actor: str, note: str,
              now_ms: int) -> Alarm:
        self.records += 1
        return ep.record(action=action, actor=actor, note=note, now_ms=now_ms,
                         shelved_until=p.shelved_until if not ep.closed else None,
                         suppressed=p.suppressed)

    def _keep(self, ep: Episode) -> None:
        self._done[ep.alarm_id] = ep
        while len(self._done) > KEEP_DONE:
            self._done.popitem(last=False)

    # -- operators ----------------------------------------------------------------------

    def find(self, alarm_id: str) -> Episode | None:
        for p in self._points.values():
            if p.episode is not None and p.episode.alarm_id == alarm_id:
                return p.episode
        return self._done.get(alarm_id)

    def _target(self, alarm_id: str, asset: str) -> tuple[Episode, _Point]:
        ep = self.find(alarm_id)
        if ep is None:
            raise AlarmActionError(
                f"alarm {alarm_id} is not known to this worker (it holds {self.open_count} "
                f"open and {len(self._done)} finished episodes); check the id with "
                "`millstream query \"SELECT alarm_id, asset, state FROM alarms FINAL\"`",
                alarm_id=alarm_id)
        if ep.asset != asset:
            raise AlarmActionError(f"alarm {alarm_id} is on {ep.asset}, not on {asset}",
                                   alarm_id=alarm_id)
        return ep, self._points.setdefault(ep.asset, _Point())

    def act(self, action: AlarmAction, now_ms: int) -> list[Alarm]:
        """Apply an operator's ack, shelve or unshelve; AlarmActionError if it cannot be."""
        ep, p = self._target(action.alarm_id, action.asset)
        who, note = action.actor, action.note
        kind = OperatorAction(action.action)
        if kind is OperatorAction.ACK:
            if ep.acknowledged:
                return [self._emit(ep.asset, p, ep, "acknowledged", who,
                                   note or "already acknowledged", now_ms)]
            ep.acknowledged = True
            ep.closed = not ep.active
            return [self._emit(ep.asset, p, ep, "acknowledged", who, note, now_ms)]
        if ep.closed:
            raise AlarmActionError(f"alarm {ep.alarm_id} is closed: only an open alarm "
                                   f"can be {kind.value}d", alarm_id=ep.alarm_id)
        if kind is OperatorAction.SHELVE:
            seconds = min(float(action.shelve_s or 0.0), self.spec.shelve_max_s)
            p.shelved_until = now_ms + int(seconds * 1000)
            return [self._emit(ep.asset, p, ep, "shelved", who,
                               note or f"shelved for {seconds:g} s", now_ms)]
        if p.shelved_until is None:
            raise AlarmActionError(f"alarm {ep.alarm_id} is not shelved",
                                   alarm_id=ep.alarm_id)
        p.shelved_until = None
        return [self._emit(ep.asset, p, ep, "unshelved", who, note, now_ms)]

    def tick(self, now_ms: int, assets: Collection[str] | None = None) -> list[Alarm]:
        """Shelving that expired (of ``assets``, default all): the alarms come back."""
        out = []
        for asset, p in self._points.items():
            if assets is not None and asset not in assets:
                continue
            if p.shelved_until is not None and p.shelved_until <= now_ms:
                p.shelved_until = None
                if p.episode is not None:
                    out.append(self._emit(p.episode.asset, p, p.episode, "unshelved", ACTOR,
                                          "shelving expired", now_ms))
        return out

    def false_positive(self, fb: AnomalyFeedback, now_ms: int
                       ) -> tuple[list[Alarm], list[tuple[str, str, float]]]:
        """Close the episode as a false positive; the thresholds to raise:
        (detector, subject, times), so that its peak scores stay below 1 afterwards."""
        ep, p = self._target(fb.alarm_id, fb.asset)
        if ep.false_positive:
            raise AlarmActionError(f"alarm {ep.alarm_id} is already marked a false "
                                   "positive", alarm_id=ep.alarm_id)
        raises = [(key.split("|", 1)[0], key.split("|", 1)[1],
                   max(peak, 1.0) * self.spec.feedback_margin)
                  for key, peak in ep.subjects.items()]
        ep.false_positive = True
        if ep.active:
            ep.active = False
            ep.ended_at = ep.last_hot_end
        ep.closed = True
        if p.episode is ep:
            p.episode, p.quiet = None, 0
            p.recent.clear()
            p.pending.clear()
        self._keep(ep)
        note = fb.note or "false positive: its detectors' thresholds were raised"
        return [self._emit(ep.asset, p, ep, "false-positive", fb.actor, note, now_ms)], raises

    # -- state --------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        return sum(p.episode is not None for p in self._points.values())

    def snapshot(self, assets: Collection[str] | None = None) -> dict[str, Any]:
        """The points of the given machines (default all) and the finished episodes."""
        points = {a: {"recent": list(p.recent),
                      "pending": [[s, [x.to_dict() for x in f]] for s, f in p.pending],
                      "episode": p.episode.to_dict() if p.episode else None,
                      "quiet": p.quiet, "shelved_until": p.shelved_until,
                      "suppressed": p.suppressed}
                  for a, p in self._points.items() if assets is None or a in assets}
        done = [e.to_dict() for e in self._done.values() if assets is None or e.asset in assets]
        return {"version": 1, "points": points, "done": done}

    def restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Take the machines of a :meth:`snapshot`, instead of all state (``replace``) or
        besides the machines held."""
        if snap.get("version") != 1:
            raise StateVersionError("alarm state", f"layout {snap.get('version')!r}",
                                    "layout 1")
        if replace:
            self._points.clear()
            self._done.clear()
        for asset, d in snap["points"].items():
            self._points[asset] = _Point(
                deque(d["recent"]),
                deque((s, [Anomaly.from_dict(x) for x in f]) for s, f in d["pending"]),
                Episode.from_dict(d["episode"]) if d["episode"] else None,
                d["quiet"], d["shelved_until"], d["suppressed"])
        for e in snap["done"]:
            self._keep(Episode.from_dict(e))

    def drop(self, assets: Collection[str]) -> None:
        """Forget these machines' alarms (their partition moved to another worker)."""
        gone = set(assets)
        for a in gone:
            self._points.pop(a, None)
        for alarm_id in [i for i, e in self._done.items() if e.asset in gone]:
            del self._done[alarm_id]


_RANK = ["low", "medium", "high", "critical"]
