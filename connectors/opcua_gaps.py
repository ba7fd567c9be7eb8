"""Gap markers and resumed values: which readings of a tag go out, and at what ts (pure).

The rule (also in :mod:`connectors.opcua`): when a session ends, every tag not already
in a gap gets one marker, a BAD reading with a null value stamped when the loss was
detected and never before the tag's last published reading. A tag's first reading after
its marker keeps its ts if that is later than the marker; otherwise it goes out at marker
ts + 1 ms with ``resumed after gap; source ts <original>`` in ``status``. Outside a gap, a
reading identical to the tag's last published one is a repeat, not a new reading.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.opcua_values import Converted
from schemas.readings import Quality

__all__ = ["GapTracker"]


class GapTracker:
    """Per tag: the last published reading and, while in a gap, its marker's ts."""

    def __init__(self) -> None:
        self.last: dict[str, Converted] = {}  # as received, to recognise a repeat
        self.last_ts: dict[str, int] = {}  # as published, to place a marker after it
        self.gap: dict[str, int] = {}  # tag -> marker ts, while the tag is in a gap
        self.repeats = self.resumed = self.markers = 0

    def admit(self, tag: str, reading: Converted) -> Converted | None:
        """The reading to publish for ``reading`` of ``tag`` (None: a repeat, drop it)."""
        marker = self.gap.pop(tag, None)
        if marker is None and self.last.get(tag) == reading:
            self.repeats += 1
            return None
        self.last[tag] = reading
        if marker is not None and reading.ts <= marker:
            note = f"resumed after gap; source ts {reading.ts}"
            status = note if reading.status is None else f"{reading.status}; {note}"
            reading = reading._replace(ts=marker + 1, status=status)
            self.resumed += 1
        self.last_ts[tag] = reading.ts
        return reading

    def mark(self, tags: Iterable[str], now: int, reason: str) -> list[Converted | None]:
        """The markers opening a gap at ``now``: one per tag not already in a gap (None
        for those that are), in the order of ``tags``."""
        status = f"gap: {reason}"
        out: list[Converted | None] = []
        for tag in tags:
            if tag in self.gap:
                out.append(None)
                continue
            last = self.last_ts.get(tag)
            ts = now if last is None else max(now, last + 1)
            self.gap[tag] = ts
            self.markers += 1
            out.append(Converted(ts, None, Quality.BAD, status=status))
        return out
