"""What the Faust edge measures for ``/metrics``: consumer lag, frame sizes, processing time.

The counters come from :meth:`FrameProcessor.counters` through the status document; this
class adds what only the edge sees: which offset each partition has reached (for the
lag) and how long one message took.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from schemas.health import StageHealth

__all__ = ["WorkerProbe"]

logger = logging.getLogger(__name__)


class _TP(Protocol):
    topic: str
    partition: int


class _Consumer(Protocol):
    def assignment(self) -> Iterable[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...


class WorkerProbe:
    """Lifecycle: construct with the stage's health, call :meth:`seen` for every message,
    :meth:`lag` from the status timer. ``sources`` are the catalog's source names: a frame
    keyed by anything else is labelled ``other`` (labels stay few)."""

    def __init__(self, health: StageHealth, topic: str, sources: Iterable[str]) -> None:
        self.health, self.topic = health, topic
        self.sources = frozenset(sources)
        self.positions: dict[int, int] = {}  # partition -> next offset to process

    def seen(self, partition: int, offset: int, key: bytes | None, readings: int,
             seconds: float) -> None:
        self.positions[partition] = offset + 1
        name = key.decode("utf-8", "replace") if key else ""
        if readings:
            self.health.observe_frame(readings, name if name in self.sources else "other")
        self.health.observe_process(seconds, self.topic)

    def lag(self, consumer: _Consumer | None) -> int | None:
        """Messages behind the end of the assigned readings partitions (None: unknown)."""
        if consumer is None:
            return None
        try:
            total = 0
            for tp in consumer.assignment():
                if tp.topic != self.topic:
                    continue
                high = consumer.highwater(tp)
                pos = self.positions.get(tp.partition)
                if high is not None and pos is not None:
                    total += max(0, int(high) - pos)
            return total
        except Exception as exc:  # not started yet, or shutting down
            logger.debug("no consumer lag: %r", exc)
            return None
