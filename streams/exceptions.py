"""Errors of the stream processing stage."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["StreamsError", "WorkerError"]


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
