"""One alarm episode: what it gathered, its ISA-18.2 state, and its records.

An :class:`Episode` accumulates the anomalies of one incident on one machine: the peak
score per tag, per detector, and per (detector, subject) pair (what operator feedback
raises), and the anomaly that scored highest (what the message says). Its state follows
ISA-18.2 from the condition (``active``), the acknowledgement, and the machine's alarm
point (shelved, suppressed); :meth:`record` writes one :class:`Alarm` per change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.alarms import Alarm, AlarmState
from schemas.catalog import AlarmSpec
from schemas.events import Anomaly

__all__ = ["Episode", "describe", "severity_of"]

logger = logging.getLogger(__name__)

# what a detector's firing means, in words
_PHRASES = {
    "level_shift": "has shifted from its usual level",
    "cusum": "is drifting",
    "spike": "spiked",
    "variance": "is noisier or quieter than usual",
    "stuck": "is stuck (it stopped changing)",
    "knn": "moves in a shape not seen before",
    "pca": "no longer moves with the machine's other tags as it used to",
    "hst": "is in a combination with the other tags not seen before",
}


def severity_of(peak: float, spec: AlarmSpec) -> str:
    """Severity from the peak score (threshold units)."""
    if peak >= spec.critical_score:
        return "critical"
    if peak >= spec.high_score:
        return "high"
    if peak >= spec.medium_score:
        return "medium"
    return "low"


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _phrase(detector: str, kind: str) -> str:
    for key in (detector.rsplit(":", 1)[-1], kind):
        if key in _PHRASES:
            return _PHRASES[key]
    return "is unusual"


def describe(machine: str, top: Anomaly | None, tags: list[str], started_at: int) -> str:
    """The message a person reads: the machine, what is wrong with which tag, since when."""
    since = datetime.fromtimestamp(started_at / 1000, tz=UTC).strftime("%H:%M:%S")
    if top is None:
        return f"{_short(machine)}: anomalous since {since} UTC"
    norm = top.score / top.threshold if top.threshold else top.score
    kind = top.detector.split(":", 1)[0]
    if top.scope == "asset":
        what = f"{top.feature.replace(':', ' ')} {_phrase(top.detector, kind)}"
    else:
        what = f"{_short(top.tag)} {top.feature} {_phrase(top.detector, kind)}"
    others = [_short(t) for t in tags if _short(t) not in what][:3]
    also = f"; also {', '.join(others)}" if others else ""
    return (f"{_short(machine)}: {what} (score {norm:.1f}, {top.detector}) since {since} "
            f"UTC{also}")


@dataclass
class Episode:
    """One incident on one machine, from raised to closed."""

    alarm_id: str
    asset: str
    started_at: int  # window start of its first anomalous window
    last_hot_end: int  # window end of its latest anomalous window
    active: bool = True
    acknowledged: bool = False
    closed: bool = False
    false_positive: bool = False
    version: int = 0
    severity: str = "low"
    peak: float = 0.0
    ended_at: int | None = None
    tags: dict[str, float] = field(default_factory=dict)  # tag -> peak score
    detectors: dict[str, float] = field(default_factory=dict)
    subjects: dict[str, float] = field(default_factory=dict)  # "detector|subject" -> peak
    top: dict[str, Any] | None = None  # the highest-scoring anomaly, as its dict

    def absorb(self, anomalies: tuple[Anomaly, ...] | list[Anomaly], window_end: int) -> None:
        for a in anomalies:
            norm = a.score / a.threshold if a.threshold else a.score
            for t in a.tags or [a.tag]:
                self.tags[t] = max(self.tags.get(t, 0.0), norm)
            self.detectors[a.detector] = max(self.detectors.get(a.detector, 0.0), norm)
            key = f"{a.detector.split(':', 1)[0]}|{a.tag}"
            self.subjects[key] = max(self.subjects.get(key, 0.0), norm)
            if norm > self.peak or self.top is None:
                self.peak = max(self.peak, norm)
                self.top = a.to_dict()
            self.last_hot_end = max(self.last_hot_end, window_end)

    def ranked_tags(self) -> list[str]:
        return [t for t, _ in sorted(self.tags.items(), key=lambda kv: -kv[1])]

    def state(self, shelved: bool, suppressed: bool) -> AlarmState:
        if self.closed:
            return AlarmState.CLOSED
        if shelved:
            return AlarmState.SHELVED
        if suppressed and self.active:
            return AlarmState.SUPPRESSED
        if self.active:
            return AlarmState.ACKNOWLEDGED if self.acknowledged else AlarmState.ACTIVE
        return AlarmState.CLEARED

    def record(self, *, action: str, actor: str, note: str, now_ms: int,
               shelved_until: int | None, suppressed: bool) -> Alarm:
        """The next version of this episode's record."""
        self.version += 1
        top = Anomaly.from_dict(self.top) if self.top is not None else None
        tags = self.ranked_tags()
        return Alarm(
            alarm_id=self.alarm_id, asset=self.asset, tags=tags, severity=self.severity,
            state=self.state(shelved_until is not None, suppressed).value,
            message=describe(self.asset, top, tags, self.started_at),
            started_at=self.started_at, ended_at=self.ended_at, updated_at=now_ms,
            version=self.version, active=self.active, acknowledged=self.acknowledged,
            action=action, actor=actor, note=note, score=round(self.peak, 6),
            detectors=sorted(self.detectors, key=lambda d: -self.detectors[d]),
            shelved_until=shelved_until,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Episode:
        return cls(**d)
