"""Event-time watermark of one (source, partition): how far its windows may close.

The watermark is the highest source timestamp seen minus the allowed lateness; a window
closes once its end is at or before it. A source that goes quiet would hold its windows
open for ever, so after ``idle_ms`` of processing time without a frame its event time is
taken to move on with the worker's clock: the watermark becomes
``max_ts + silent - lateness``. Users need no heartbeat messages for that.

Lifecycle: ``Watermark(lateness_ms)``; ``observe(frame_max_ts, now_ms)`` per frame (future
timestamps already removed); ``idle(now_ms, idle_ms)`` on a timer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Watermark"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Watermark:
    lateness_ms: int
    max_ts: int | None = None  # highest source timestamp seen (not counting future ones)
    value: int | None = None  # windows ending at or before it are closed
    last_seen_ms: int = 0  # processing time of the last frame

    def observe(self, frame_max_ts: int | None, now_ms: int) -> int | None:
        """Note a frame; the new watermark if it moved, else None."""
        self.last_seen_ms = now_ms
        if frame_max_ts is None:
            return None
        if self.max_ts is None or frame_max_ts > self.max_ts:
            self.max_ts = frame_max_ts
        return self._advance(self.max_ts - self.lateness_ms)

    def idle(self, now_ms: int, idle_ms: int) -> int | None:
        """Move on by processing time if the source has been silent ``idle_ms``."""
        silent = now_ms - self.last_seen_ms
        if self.max_ts is None or silent < idle_ms:
            return None
        return self._advance(self.max_ts + silent - self.lateness_ms)

    def force(self, to: int) -> None:
        """Set the watermark at least to ``to`` (shutdown flush)."""
        self._advance(to)

    def _advance(self, to: int) -> int | None:
        if self.value is not None and to <= self.value:
            return None
        self.value = to
        return to

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Watermark:
        return cls(**doc)
