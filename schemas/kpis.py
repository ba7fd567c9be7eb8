"""KPIs per machine and shift: the ``<prefix>.kpis`` topic (``millstream.kpis.v1``).

The stream worker publishes one record per machine and shift every ``kpis.interval_s`` of
event time while the shift runs (``final: false``, the shift so far, up to ``through``) and
one when it ends (``final: true``). Key: the machine path. The ClickHouse table ``kpis``
keeps the newest record per (machine, shift_start). Formulas (README "KPIs"):

- planned_s = shift time so far - planned stops - maintenance - unknown = run + fault + idle
- availability = run_s / planned_s
- performance = parts * ideal_cycle_s / run_s
- quality = good / parts, good = parts - rejects
- oee = availability * performance * quality
- kwh: power integrated over event time (trapezoid), kwh_per_part = kwh / parts

A ratio whose denominator is 0 is null; oee is 0 when availability is 0, else null when a
factor is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.events import _NUMBER, _Event

__all__ = ["KpiRecord"]


@dataclass(frozen=True, slots=True)
class KpiRecord(_Event):
    SCHEMA: ClassVar[str] = "millstream.kpis.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "machine": (str,), "shift": (str,), "shift_start": (int,), "shift_end": (int,),
        "final": (bool,), "through": (int,), "updated": (int,), "planned_s": _NUMBER,
        "run_s": _NUMBER, "fault_s": _NUMBER, "idle_s": _NUMBER, "maintenance_s": _NUMBER,
        "stopped_s": _NUMBER, "unknown_s": _NUMBER, "availability": _NUMBER,
        "performance": _NUMBER, "quality": _NUMBER, "oee": _NUMBER, "parts": _NUMBER,
        "good": _NUMBER, "rejects": _NUMBER, "ideal_cycle_s": _NUMBER, "kwh": _NUMBER,
        "kwh_per_part": _NUMBER, "power_kw": _NUMBER, "energy_gap_s": _NUMBER,
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({
        "availability", "performance", "quality", "oee", "ideal_cycle_s", "kwh",
        "kwh_per_part", "power_kw"})

    machine: str  # ISA-95 path
    shift: str  # the shift's name in the catalog
    shift_start: int  # Unix ms
    shift_end: int  # Unix ms
    final: bool  # the shift has ended (by the watermark): these are its KPIs
    through: int  # Unix ms, event time the figures cover up to (shift_end when final)
    updated: int  # Unix ms, processing time of this record
    planned_s: float  # run + fault + idle
    run_s: float
    fault_s: float
    idle_s: float
    maintenance_s: float  # planned maintenance: not planned production time
    stopped_s: float  # the calendar's planned stops
    unknown_s: float  # no usable state (before the first reading, after a BAD one)
    availability: float | None
    performance: float | None  # null without an oee spec (ideal cycle) in the catalog
    quality: float | None
    oee: float | None
    parts: float  # counter increase in the shift (every part, good or rejected)
    good: float
    rejects: float
    ideal_cycle_s: float | None
    kwh: float | None  # null: the machine has no energy spec in the catalog
    kwh_per_part: float | None
    power_kw: float | None  # the last power value
    energy_gap_s: float  # time between power readings further apart than the max gap

    def key(self) -> bytes:
        return self.machine.encode()
