"""Errors of the stream processing stage."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["AlarmActionError", "StreamsError", "WorkerError"]


class StreamsError(MillstreamError):
    """Root of the errors ``streams`` raises on purpose."""


class WorkerError(StreamsError):
    """The Faust worker could not start or stopped with an error.

    ``app_id`` names the consumer group, ``bootstrap`` the Kafka it tried to reach.
    """

    def __init__(self, message: str, *, app_id: str, bootstrap: str) -> None:
        super().__init__(message)
        self.app_id = app_id
        self.bootstrap = bootstrap


class AlarmActionError(StreamsError):
    """An operator's action or feedback cannot apply to the alarm ``alarm_id`` (unknown,
    on another machine, closed, not shelved): the message goes to the dead-letter topic."""

    def __init__(self, message: str, *, alarm_id: str) -> None:
        super().__init__(message)
        self.alarm_id = alarm_id
