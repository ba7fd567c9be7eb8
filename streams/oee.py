"""What one machine did in one shift, and the OEE formulas that turn it into KPIs.

:class:`ShiftTally` accumulates a shift's seconds per machine state, its part and reject
counts and its energy (:class:`streams.timeline.MachineTimeline` fills it) and turns them
into a :class:`schemas.kpis.KpiRecord` (formulas in that module).
:func:`counter_increase` is the counter rule: a decrease is a wrap when the counter has a
modulus and fell by more than half of it (it went past its top to 0), else a reset (it
restarted from 0: the increase is the new value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.kpis import KpiRecord
from schemas.twin import MachineState
from streams.roles import MachineInfo
from streams.shifts import ShiftSlot

__all__ = ["ShiftTally", "counter_increase"]


def counter_increase(prev: float, value: float, modulus: float | None) -> float:
    """How much a counter rose from ``prev`` to ``value``, across a wrap or a reset."""
    if value >= prev:
        return value - prev
    if modulus is not None and prev - value > modulus / 2:
        return value - prev + modulus  # wrapped past its top
    return value  # reset: counting again from 0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b > 0 else None


@dataclass(slots=True)
class ShiftTally:
    """What one machine did in one shift so far."""

    slot: ShiftSlot
    through: int  # event time tallied up to
    ms: dict[MachineState, int] = field(default_factory=dict)
    parts: float = 0.0
    rejects: float = 0.0
    kwh: float = 0.0
    gap_ms: int = 0
    power_kw: float | None = None

    def record(self, info: MachineInfo, final: bool, now_ms: int) -> KpiRecord:
        s = self.slot
        through = s.end if final else min(self.through, s.end)

        def sec(state: MachineState) -> float:
            return self.ms.get(state, 0) / 1000.0
        run, fault = sec(MachineState.RUNNING), sec(MachineState.FAULT)
        idle, maint = sec(MachineState.IDLE), sec(MachineState.MAINTENANCE)
        stopped = s.stopped_ms(s.start, through) / 1000.0
        planned = run + fault + idle
        unknown = max(0.0, (through - s.start) / 1000.0 - stopped - planned - maint)
        spec = info.spec.oee
        availability = _ratio(run, planned)
        performance = quality = None
        good = self.parts - self.rejects
        if spec is not None:
            performance = _ratio(self.parts * spec.ideal_cycle_s, run)
            quality = _ratio(good, self.parts)
        if availability == 0:
            oee: float | None = 0.0
        elif availability is None or performance is None or quality is None:
            oee = None
        else:
            oee = round(availability * performance * quality, 6)
        kwh = round(self.kwh, 6) if info.power_scale is not None else None
        return KpiRecord(
            machine=info.path, shift=s.name, shift_start=s.start, shift_end=s.end,
            final=final, through=through, updated=now_ms, planned_s=planned, run_s=run,
            fault_s=fault, idle_s=idle, maintenance_s=maint, stopped_s=stopped,
            unknown_s=unknown, availability=availability, performance=performance,
            quality=quality, oee=oee, parts=self.parts, good=good, rejects=self.rejects,
            ideal_cycle_s=spec.ideal_cycle_s if spec is not None else None, kwh=kwh,
            kwh_per_part=(_ratio(kwh, self.parts) if kwh is not None else None),
            power_kw=self.power_kw, energy_gap_s=self.gap_ms / 1000.0,
        )
