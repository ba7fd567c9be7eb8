"""The catalog's KPI settings: the shift calendar, and per machine what OEE and energy read.

``kpis:`` (top level) gives the timezone, the shifts and their planned stops; each machine
may name its state tags (``state_tags``), its part and reject counters with the ideal
cycle time (``oee``), and where its power comes from (``energy``). Times of day are
``"HH:MM"`` in the catalog's timezone; a shift whose end is not after its start ends on the
next day (``22:00``-``06:00``), and one whose start equals its end lasts 24 h.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from schemas.catalog_base import FrozenSpec

if TYPE_CHECKING:
    from schemas.catalog import MachineSpec

__all__ = ["POWER_UNITS", "EnergySpec", "KpiSpec", "OeeSpec", "ShiftSpec", "StateTagsSpec",
           "StopSpec", "check_kpi_tags", "minutes_of_day"]

# a power tag's unit -> kW
POWER_UNITS: dict[str, float] = {"W": 1e-3, "kW": 1.0, "MW": 1e3}

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def minutes_of_day(text: str) -> int:
    """``"06:30"`` -> 390; ValueError naming the value otherwise."""
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"time of day {text!r} must be HH:MM (00:00 to 23:59), e.g. '06:00'")
    return int(m.group(1)) * 60 + int(m.group(2))


class StopSpec(FrozenSpec):
    """A planned stop inside a shift (a break, a planned cleaning): not planned time."""

    name: str = ""
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        minutes_of_day(v)
        return v


class ShiftSpec(FrozenSpec):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    start: str
    end: str
    planned_stops: list[StopSpec] = []

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        minutes_of_day(v)
        return v

    @property
    def span_min(self) -> tuple[int, int]:
        """(start, end) in minutes from the start day's midnight; end > start."""
        a, b = minutes_of_day(self.start), minutes_of_day(self.end)
        return a, b if b > a else b + 24 * 60

    @model_validator(mode="after")
    def _stops_inside(self) -> ShiftSpec:
        a, b = self.span_min
        for s in self.planned_stops:
            lo, hi = minutes_of_day(s.start), minutes_of_day(s.end)
            lo += 24 * 60 if lo < a else 0
            hi += 24 * 60 if hi <= a else 0
            if not a <= lo < hi <= b:
                raise ValueError(f"planned stop {s.name or s.start!r} ({s.start}-{s.end}) is "
                                 f"not inside shift {self.name!r} ({self.start}-{self.end}); "
                                 "give each stop under the shift it belongs to")
        return self


class KpiSpec(FrozenSpec):
    """The shift calendar and the KPI settings shared by all machines."""

    timezone: str = "UTC"
    shifts: list[ShiftSpec] = [ShiftSpec(name="day", start="00:00", end="00:00")]
    interval_s: float = Field(default=60.0, gt=0)  # a running shift's KPIs every N s (event time)
    energy_max_gap_s: float = Field(default=60.0, gt=0)  # longer gaps are not integrated

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {v!r} is not an IANA zone name; use e.g. 'UTC' or "
                             "'Europe/Berlin'") from exc
        return v

    @model_validator(mode="after")
    def _no_overlap(self) -> KpiSpec:
        if not self.shifts:
            raise ValueError("kpis.shifts is empty; list at least one shift (name, start, end)")
        if len({s.name for s in self.shifts}) != len(self.shifts):
            raise ValueError("kpis.shifts: shift names must be unique")
        spans = sorted((a, b, s.name) for s in self.shifts for a, b in [s.span_min])
        # compare each shift with the others on a repeating 24 h clock
        for i, (a, b, name) in enumerate(spans):
            for a2, b2, other in spans[i + 1:]:
                for shift in (-1440, 0, 1440):
                    if a < b2 + shift and a2 + shift < b:
                        raise ValueError(f"kpis.shifts {name!r} and {other!r} overlap; a "
                                         "moment belongs to at most one shift")
        return self


class StateTagsSpec(FrozenSpec):
    """Which of the machine's tags say running, fault and maintenance (kind state, 1/0).
    A name the machine has no tag for is simply not used."""

    running: str = "running"
    fault: str = "fault"
    maintenance: str = "maintenance"


class OeeSpec(FrozenSpec):
    """Performance and quality inputs: the part counter (every part made, good or not),
    the reject counter (optional: no rejects means quality 1), the ideal cycle time."""

    ideal_cycle_s: float = Field(gt=0)
    parts: str = "part_count"
    rejects: str | None = None


class EnergySpec(FrozenSpec):
    """Power in kW from a power tag (unit W, kW or MW), or from a current tag (A) as
    ``sqrt(3) * voltage_v * I * power_factor`` (three-phase, line-to-line voltage) or
    ``voltage_v * I * power_factor`` (``phases: 1``)."""

    power: str | None = None
    current: str | None = None
    voltage_v: float | None = Field(default=None, gt=0)
    power_factor: float = Field(default=1.0, gt=0, le=1)
    phases: Literal[1, 3] = 3

    @model_validator(mode="after")
    def _one_source(self) -> EnergySpec:
        if (self.power is None) == (self.current is None):
            raise ValueError("energy: give 'power' (a power tag) or 'current' (a current tag "
                             "with voltage_v and power_factor), exactly one")
        if self.current is not None and self.voltage_v is None:
            raise ValueError(f"energy from current {self.current!r} needs voltage_v (line-to-"
                             "line for three-phase) and power_factor")
        return self


def check_kpi_tags(m: MachineSpec) -> None:
    """The tags a machine's OEE and energy read exist and have a kind that fits."""
    kinds = {t.name: t.kind for t in m.tags}
    wanted: list[tuple[str, str, tuple[str, ...]]] = []
    if m.oee is not None:
        wanted.append(("oee.parts", m.oee.parts, ("counter",)))
        if m.oee.rejects is not None:
            wanted.append(("oee.rejects", m.oee.rejects, ("counter",)))
    if m.energy is not None:
        name = m.energy.power or m.energy.current or ""
        wanted.append(("energy", name, ("analog",)))
    for field, name, ok in wanted:
        if name not in kinds:
            raise ValueError(f"machine {m.name!r}: {field} names tag {name!r}, which it does "
                             f"not have (tags: {', '.join(sorted(kinds))})")
        if kinds[name] not in ok:
            raise ValueError(f"machine {m.name!r}: {field} tag {name!r} is of kind "
                             f"{kinds[name]!r}; give it kind {ok[0]}")
    if m.energy is not None and m.energy.power is not None:
        unit = next(t.unit for t in m.tags if t.name == m.energy.power)
        if unit not in POWER_UNITS:
            raise ValueError(f"machine {m.name!r}: energy.power tag {m.energy.power!r} has "
                             f"unit {unit!r}; give it one of {', '.join(POWER_UNITS)}")
