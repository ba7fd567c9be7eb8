"""Alarm episodes per machine from the detectors' evidence (ISA-18.2 states)."""

from streams.alarms.engine import ACTOR, AlarmEngine
from streams.alarms.episode import Episode, describe, severity_of

__all__ = ["ACTOR", "AlarmEngine", "Episode", "describe", "severity_of"]
