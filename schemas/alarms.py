"""Alarm episodes and what operators do with them: the alarms, alarm-actions and
anomaly-feedback topics.

``<prefix>.alarms`` carries one :class:`Alarm` per state change of an episode (ISA-18.2:
active, acknowledged, cleared, closed, shelved, suppressed), each with a higher
``version``; the ClickHouse table keeps the latest per ``alarm_id`` and ``alarm_log`` all.
``<prefix>.alarm-actions`` carries operators' :class:`AlarmAction` (ack, shelve, unshelve)
and ``<prefix>.anomaly-feedback`` their :class:`AnomalyFeedback` (false positive). Both
are keyed by the machine's catalog source, as readings are, so that they reach the worker
that holds the machine's alarms (the topics have as many partitions as readings).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from schemas.events import _NUMBER, _Event, _strings
from schemas.exceptions import ContractError

__all__ = ["Alarm", "AlarmAction", "AlarmState", "AnomalyFeedback", "OperatorAction"]


class AlarmState(str, Enum):
    ACTIVE = "active"  # the condition is present, not acknowledged
    ACKNOWLEDGED = "acknowledged"  # present, acknowledged
    CLEARED = "cleared"  # returned to normal, not acknowledged yet (RTN unack)
    CLOSED = "closed"  # returned to normal and acknowledged: the episode is over
    SHELVED = "shelved"  # an operator set it aside for a while
    SUPPRESSED = "suppressed"  # the machine is stopped or in maintenance


class OperatorAction(str, Enum):
    ACK = "ack"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"


@dataclass(frozen=True, slots=True)
class Alarm(_Event):
    """One state change of one alarm episode on one machine."""

    SCHEMA: ClassVar[str] = "millstream.alarms.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "alarm_id": (str,), "asset": (str,), "tags": (list,), "severity": (str,),
        "state": (str,), "message": (str,), "started_at": (int,), "ended_at": (int,),
        "updated_at": (int,), "version": (int,), "active": (bool,), "acknowledged": (bool,),
        "action": (str,), "actor": (str,), "note": (str,), "score": _NUMBER,
        "detectors": (list,), "shelved_until": (int,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"ended_at", "shelved_until"})

    alarm_id: str
    asset: str  # the machine's ISA-95 path
    tags: list[str]  # the tags involved, the one that scored highest first
    severity: str  # low, medium, high, critical
    state: str  # an AlarmState value
    message: str  # what a person reads
    started_at: int  # Unix ms: start of the first anomalous window of the episode
    ended_at: int | None  # Unix ms: end of its last anomalous window, once it cleared
    updated_at: int  # Unix ms: when this change happened (processing time)
    version: int  # 1, 2, ... per episode; the newest wins
    active: bool  # the condition is present
    acknowledged: bool
    action: str  # what changed: raised, escalated, acknowledged, cleared, closed, ...
    actor: str  # who: "streams" or the operator
    note: str  # the operator's note, or why the worker changed it
    score: float  # the highest score of the episode (threshold units: > 1 anomalous)
    detectors: list[str]  # the detectors that fired in the episode
    shelved_until: int | None = None  # Unix ms, while shelved

    def __post_init__(self) -> None:
        try:
            AlarmState(self.state)
        except ValueError as exc:
            raise ContractError("bad-field", f"state={self.state!r} is not one of "
                                f"{[s.value for s in AlarmState]}") from exc
        object.__setattr__(self, "tags", _strings("tags", self.tags))
        object.__setattr__(self, "detectors", _strings("detectors", self.detectors))

    def key(self) -> bytes:
        return self.asset.encode()


@dataclass(frozen=True, slots=True)
class AlarmAction(_Event):
    """An operator acknowledges, shelves or unshelves an alarm."""

    SCHEMA: ClassVar[str] = "millstream.alarm-actions.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "action_id": (str,), "alarm_id": (str,), "asset": (str,), "action": (str,),
        "actor": (str,), "note": (str,), "at": (int,), "shelve_s": _NUMBER,
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"shelve_s"})

    action_id: str
    alarm_id: str
    asset: str  # the alarm's machine (ISA-95 path)
    action: str  # an OperatorAction value
    actor: str  # who
    note: str
    at: int  # Unix ms
    shelve_s: float | None = None  # shelve: for how long

    def __post_init__(self) -> None:
        try:
            OperatorAction(self.action)
        except ValueError as exc:
            raise ContractError("bad-field", f"action={self.action!r} is not one of "
                                f"{[a.value for a in OperatorAction]}") from exc
        if self.action == OperatorAction.SHELVE.value and not (self.shelve_s or 0) > 0:
            raise ContractError("bad-field", "shelve needs shelve_s > 0 (seconds)")


@dataclass(frozen=True, slots=True)
class AnomalyFeedback(_Event):
    """An operator's verdict on an alarm's anomalies: a false positive."""

    SCHEMA: ClassVar[str] = "millstream.anomaly-feedback.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "feedback_id": (str,), "alarm_id": (str,), "asset": (str,), "verdict": (str,),
        "actor": (str,), "note": (str,), "at": (int,),
    }

    feedback_id: str
    alarm_id: str
    asset: str
    verdict: str  # "false-positive"
    actor: str
    note: str
    at: int  # Unix ms

    def __post_init__(self) -> None:
        if self.verdict != "false-positive":
            raise ContractError("bad-field", f"verdict={self.verdict!r}: only "
                                "'false-positive' is known")
