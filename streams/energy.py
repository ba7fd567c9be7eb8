"""Energy from power readings: the trapezoid rule over event time, split at shift ends.

Between two power readings (t0, p0) and (t1, p1) the power is taken to change linearly,
so the energy is (p0 + p1) / 2 * (t1 - t0). Readings further apart than the maximum gap
are not integrated: the gap is counted instead (nothing is known about that time). A
segment that crosses a shift boundary is cut there, with the power interpolated at the
cut, so each shift gets exactly its share.

Power comes from a power tag (W, kW or MW) or from a current tag: three-phase
``P = sqrt(3) * U_LL * I * pf``, single-phase ``P = U * I * pf``
(:class:`streams.roles.PlantRoles` gives the factor per machine).
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.shifts import ShiftSlot

__all__ = ["MS_PER_HOUR", "Segment", "integrate"]

MS_PER_HOUR = 3_600_000.0

Segment = tuple[ShiftSlot, float, int]  # the shift, kWh in it, ms of gap in it


def integrate(t0: int, p0: float, t1: int, p1: float, max_gap_ms: int,
              slots: Iterable[ShiftSlot]) -> list[Segment]:
    """The energy (kWh) of the segment [t0, t1] per shift it overlaps, or its length as a
    gap when it is longer than ``max_gap_ms``. Power in kW, times in Unix ms."""
    dt = t1 - t0
    if dt <= 0:
        return []
    out: list[Segment] = []
    for slot in slots:
        a, b = max(t0, slot.start), min(t1, slot.end)
        if b <= a:
            continue
        if dt > max_gap_ms:
            out.append((slot, 0.0, b - a))
            continue
        pa = p0 + (p1 - p0) * (a - t0) / dt
        pb = p0 + (p1 - p0) * (b - t0) / dt
        out.append((slot, (pa + pb) / 2.0 * (b - a) / MS_PER_HOUR, 0))
    return out
