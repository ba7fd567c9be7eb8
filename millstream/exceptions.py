"""Errors of the shell: local stack, CLI."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["MillstreamError", "StackError"]


class StackError(MillstreamError):
    """The local stack (Kafka broker, tools it needs) could not be set up or started."""
