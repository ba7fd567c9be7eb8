"""One machine's OEE and energy per shift, from its readings in event-time order.

:class:`MachineTimeline` takes the machine's state, counter and power readings in source
timestamp order (the caller releases them up to the watermark). The state holds from one
reading to the next (report by exception), so the time between two readings counts for
the state of the first; it is tallied per shift, minus the calendar's planned stops.
Counters count their increase between readings; a decrease is a wrap when the counter has
a modulus and fell by more than half of it (it went past its top to 0), else a reset (it
restarted from 0: the increase is the new value). Power is integrated by
:func:`streams.energy.integrate`. :class:`ShiftTally` turns a shift's tally into a
:class:`schemas.kpis.KpiRecord` (formulas in that module).

Lifecycle: ``MachineTimeline(info, calendar, max_gap_ms)``; ``apply(ts, role, value,
quality)`` per reading in order; ``advance(wm)`` once the watermark passed; ``close(upto)``
pops the shifts that ended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas.kpis import KpiRecord
from schemas.readings import Quality
from schemas.twin import EnergyNow, MachineState, OeeNow
from streams.energy import integrate
from streams.roles import MachineInfo, Role, machine_state
from streams.shifts import ShiftCalendar, ShiftSlot

__all__ = ["MachineTimeline", "ShiftTally", "counter_increase"]


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


class MachineTimeline:
    """The event-time state of one machine and its tallies of the open shifts."""

    def __init__(self, info: MachineInfo, calendar: ShiftCalendar, max_gap_ms: int) -> None:
        self.info = info
        self.calendar = calendar
        self.max_gap_ms = max_gap_ms
        self.cursor: int | None = None  # state time is tallied up to here
        self.inputs: dict[Role, bool | None] = {}
        self.state = MachineState.UNKNOWN
        self.counters: dict[Role, float] = {}
        self.power: tuple[int, float] | None = None  # last good power reading (ts, kW)
        self.tallies: dict[int, ShiftTally] = {}  # by shift start

    def _tally(self, slot: ShiftSlot) -> ShiftTally:
        t = self.tallies.get(slot.start)
        if t is None:
            t = self.tallies[slot.start] = ShiftTally(slot, slot.start)
        return t

    def advance(self, to: int) -> None:
        """Tally the current state from the cursor up to ``to``."""
        if self.cursor is None or to <= self.cursor:
            return
        for slot in self.calendar.between(self.cursor, to):
            a, b = max(self.cursor, slot.start), min(to, slot.end)
            t = self._tally(slot)
            if self.state is not MachineState.UNKNOWN:
                t.ms[self.state] = t.ms.get(self.state, 0) + (b - a) - slot.stopped_ms(a, b)
            t.through = max(t.through, b)
        self.cursor = to

    def apply(self, ts: int, role: Role, value: float, quality: int) -> bool:
        """One reading, in timestamp order; False if it is older than the cursor (late)."""
        if self.cursor is not None and ts < self.cursor:
            return False
        if self.cursor is None:
            self.cursor = ts
        self.advance(ts)
        usable = quality != Quality.BAD and not math.isnan(value)
        if role in (Role.RUNNING, Role.FAULT, Role.MAINTENANCE):
            self.inputs[role] = (value >= 0.5) if usable else None
            self.state = machine_state(self.inputs.get(Role.RUNNING),
                                       self.inputs.get(Role.FAULT),
                                       self.inputs.get(Role.MAINTENANCE),
                                       self.info.spec.maintenance)
        elif not usable:
            return True  # a counter or power reading without a value: wait for the next
        elif role in (Role.PARTS, Role.REJECTS):
            prev = self.counters.get(role)
            self.counters[role] = value
            slot = self.calendar.at(ts)
            if prev is not None and slot is not None:
                inc = counter_increase(prev, value, self.info.modulus.get(role))
                t = self._tally(slot)
                if role is Role.PARTS:
                    t.parts += inc
                else:
                    t.rejects += inc
        elif role is Role.POWER and self.info.power_scale is not None:
            kw = value * self.info.power_scale
            if self.power is not None:
                t0, p0 = self.power
                for slot, kwh, gap in integrate(t0, p0, ts, kw, self.max_gap_ms,
                                                self.calendar.between(t0, ts)):
                    t = self._tally(slot)
                    t.kwh += kwh
                    t.gap_ms += gap
            self.power = (ts, kw)
            slot = self.calendar.at(ts)
            if slot is not None:
                self._tally(slot).power_kw = round(kw, 6)
        return True

    def close(self, upto: int) -> list[ShiftTally]:
        """Pop the tallies of shifts that ended at or before ``upto``."""
        done = [t for start, t in sorted(self.tallies.items()) if t.slot.end <= upto]
        for t in done:
            del self.tallies[t.slot.start]
        return done

    def current(self) -> ShiftTally | None:
        """The tally of the shift the cursor is in (the newest one)."""
        if not self.tallies:
            return None
        return self.tallies[max(self.tallies)]

    def summary(self, now_ms: int) -> tuple[OeeNow | None, EnergyNow | None]:
        """The running shift's OEE and energy so far, for the twin."""
        t = self.current()
        if t is None:
            return None, None
        r = t.record(self.info, False, now_ms)
        oee = OeeNow(r.shift, r.shift_start, r.availability, r.performance, r.quality,
                     r.oee, r.parts, r.good, r.rejects)
        energy = (EnergyNow(r.shift, r.kwh, r.kwh_per_part, r.power_kw)
                  if r.kwh is not None else None)
        return oee, energy
