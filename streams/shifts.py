"""The shift calendar: which shift a moment belongs to, in the catalog's timezone.

Shifts are wall-clock times of day (``kpis.shifts``), so a night shift over a daylight
saving change lasts 7 or 9 hours, as it does on the shop floor. A moment outside every
shift belongs to none (no planned production). Planned stops are wall-clock spans inside
their shift.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from schemas.catalog_kpis import KpiSpec, minutes_of_day

__all__ = ["ShiftCalendar", "ShiftSlot"]


@dataclass(frozen=True, slots=True)
class ShiftSlot:
    """One occurrence of a shift: [start, end) in Unix ms, with its planned stops."""

    name: str
    start: int
    end: int
    stops: tuple[tuple[int, int], ...] = ()

    def stopped_ms(self, a: int, b: int) -> int:
        """How much of [a, b) falls into the planned stops."""
        return sum(max(0, min(b, hi) - max(a, lo)) for lo, hi in self.stops)


class ShiftCalendar:
    """``at(ts)`` and ``between(t0, t1)`` over the catalog's shifts (cached per day)."""

    def __init__(self, spec: KpiSpec) -> None:
        self.zone = zoneinfo.ZoneInfo(spec.timezone)
        self.spec = spec
        self._day = lru_cache(maxsize=64)(self._slots_of_day)

    def _slots_of_day(self, day: date) -> tuple[ShiftSlot, ...]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)

        def ms(minutes: int) -> int:  # wall-clock minutes after that midnight -> Unix ms
            wall = midnight + timedelta(minutes=minutes)
            return int(wall.timestamp() * 1000)

        out = []
        for s in self.spec.shifts:
            a, b = s.span_min
            stops = []
            for stop in s.planned_stops:
                lo, hi = minutes_of_day(stop.start), minutes_of_day(stop.end)
                lo += 1440 if lo < a else 0
                hi += 1440 if hi <= a else 0
                stops.append((ms(lo), ms(hi)))
            out.append(ShiftSlot(s.name, ms(a), ms(b), tuple(stops)))
        return tuple(sorted(out, key=lambda x: x.start))

    def _date(self, ts: int) -> date:
        return datetime.fromtimestamp(ts / 1000, self.zone).date()

    def between(self, t0: int, t1: int) -> list[ShiftSlot]:
        """The shifts overlapping [t0, t1), in time order."""
        day = self._date(t0) - timedelta(days=1)
        last = self._date(t1)
        out: list[ShiftSlot] = []
        while day <= last:
            out += [s for s in self._day(day) if s.start < t1 and s.end > t0]
            day += timedelta(days=1)
        return out

    def at(self, ts: int) -> ShiftSlot | None:
        """The shift ``ts`` falls into, or None."""
        for s in self.between(ts, ts + 1):
            return s
        return None
