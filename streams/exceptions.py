"""Errors of the stream processing stage."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["AlarmActionError", "StateError", "StateVersionError", "StreamsError", "WorkerError"]


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


class StateError(StreamsError):
    """A checkpoint of the worker's state could not be written, read or used."""


class StateVersionError(StateError):
    """A checkpoint was made by another version (layout, River release, window
    configuration) than this worker's: ``what`` it is, what it was ``found`` made with,
    what this worker ``expected``. Restoring it could compute wrong results."""

    def __init__(self, what: str, found: str, expected: str) -> None:
        super().__init__(f"{what} was saved with {found}, this worker has {expected}; "
                         "it cannot be restored")
        self.what = what
        self.found = found
        self.expected = expected


class AlarmActionError(StreamsError):
    """An operator's action or feedback cannot apply to the alarm ``alarm_id`` (unknown,
    on another machine, closed, not shelved): the message goes to the dead-letter topic."""

    def __init__(self, message: str, *, alarm_id: str) -> None:
        super().__init__(message)
        self.alarm_id = alarm_id
