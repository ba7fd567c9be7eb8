"""One machine's state, counters and power on event time, tallied per shift.

:class:`MachineTimeline` takes the machine's KPI readings a batch at a time, sorted by
source timestamp (the caller releases them up to the watermark). The state holds from one
reading to the next (devices report by exception), so the time between two readings counts
for the state of the first, minus the calendar's planned stops; only readings that change
an input are walked one by one. Counter increases (:func:`streams.oee.counter_increase`)
and the power's trapezoids (:func:`streams.energy.integrate`) are computed with NumPy for
the whole batch, and go to the shift of the reading that shows them (a power segment that
crosses a shift's end is split there). A reading older than what the timeline has tallied
is late: not applied, counted by the caller.

Lifecycle: ``MachineTimeline(info, calendar, max_gap_ms)``; ``apply(ts, role, value,
quality)`` per batch; ``advance(wm)`` once the watermark passed; ``close(upto)`` pops the
shifts that ended.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from schemas.readings import Quality
from schemas.twin import EnergyNow, MachineState, OeeNow
from streams.energy import MS_PER_HOUR, integrate
from streams.oee import ShiftTally, counter_increase
from streams.roles import IS_STATE, STATE_ROLES, MachineInfo, Role, machine_state
from streams.shifts import ShiftCalendar, ShiftSlot

__all__ = ["MachineTimeline"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


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

    def apply(self, ts: I64, role: npt.NDArray[np.int8], value: F64,
              quality: npt.NDArray[np.int8]) -> int:
        """One batch of the machine's readings, sorted by timestamp; how many were late."""
        if self.cursor is None:
            self.cursor = int(ts[0])
        late = ts < self.cursor
        n_late = int(np.count_nonzero(late))
        if n_late:
            ts, role, value, quality = ts[~late], role[~late], value[~late], quality[~late]
        usable = (quality != Quality.BAD) & ~np.isnan(value)
        states = IS_STATE[role]
        if states.any():
            self._states(ts[states], role[states], value[states], usable[states])
        for r in (Role.PARTS, Role.REJECTS):
            m = (role == r) & usable
            if m.any():
                self._counter(r, ts[m], value[m])
        m = (role == Role.POWER) & usable
        if m.any() and self.info.power_scale is not None:
            self._power(ts[m], value[m] * self.info.power_scale)
        return n_late

    def _states(self, ts: I64, role: npt.NDArray[np.int8], value: F64,
                usable: npt.NDArray[np.bool_]) -> None:
        code = np.where(usable, (value >= 0.5).astype(np.int8), np.int8(-1))  # -1: unknown
        changes: list[npt.NDArray[np.intp]] = []
        for r in STATE_ROLES:
            pos = np.flatnonzero(role == r)
            if not len(pos):
                continue
            held = self.inputs.get(r)
            prev = -2 if r not in self.inputs else (-1 if held is None else int(held))
            c = code[pos]
            changes.append(pos[c != np.concatenate(([prev], c[:-1]))])
        spec_maintenance = self.info.spec.maintenance
        for i in np.sort(np.concatenate(changes)).tolist():
            self.advance(int(ts[i]))
            self.inputs[Role(int(role[i]))] = None if code[i] < 0 else bool(code[i])
            self.state = machine_state(self.inputs.get(Role.RUNNING),
                                       self.inputs.get(Role.FAULT),
                                       self.inputs.get(Role.MAINTENANCE), spec_maintenance)

    def _counter(self, r: Role, ts: I64, v: F64) -> None:
        prev = self.counters.get(r)
        self.counters[r] = float(v[-1])
        if prev is None:  # the first reading is the baseline
            prev, ts, v = float(v[0]), ts[1:], v[1:]
            if not len(v):
                return
        inc = np.diff(v, prepend=prev)
        modulus = self.info.modulus.get(r)
        for i in np.flatnonzero(inc < 0).tolist():  # a reset or a wrap: rare
            inc[i] = counter_increase(prev if i == 0 else float(v[i - 1]), float(v[i]), modulus)
        for slot, total in self._by_shift(ts, inc):
            t = self._tally(slot)
            if r is Role.PARTS:
                t.parts += total
            else:
                t.rejects += total

    def _by_shift(self, ts: I64, amounts: F64) -> list[tuple[ShiftSlot, float]]:
        slots = self.calendar.between(int(ts[0]), int(ts[-1]) + 1)
        if len(slots) == 1 and slots[0].start <= ts[0] and ts[-1] < slots[0].end:
            return [(slots[0], float(amounts.sum()))]
        return [(s, float(amounts[(ts >= s.start) & (ts < s.end)].sum())) for s in slots]

    def _power(self, ts: I64, kw: F64) -> None:
        last = self.power
        self.power = (int(ts[-1]), float(kw[-1]))
        slot = self.calendar.at(int(ts[-1]))
        if slot is not None:
            self._tally(slot).power_kw = round(float(kw[-1]), 6)
        if last is not None:
            ts, kw = np.concatenate(([last[0]], ts)), np.concatenate(([last[1]], kw))
        if len(ts) < 2:
            return
        t0, t1 = int(ts[0]), int(ts[-1])
        slots = self.calendar.between(t0, t1)
        if len(slots) == 1 and slots[0].start <= t0 and t1 <= slots[0].end:  # the usual case
            dt = np.diff(ts)
            gap = dt > self.max_gap_ms
            area = (kw[:-1] + kw[1:]) / 2.0 * dt
            t = self._tally(slots[0])
            t.kwh += float(area[~gap].sum()) / MS_PER_HOUR
            t.gap_ms += int(dt[gap].sum())
            return
        for a, b, pa, pb in zip(ts[:-1].tolist(), ts[1:].tolist(), kw[:-1].tolist(),
                                kw[1:].tolist(), strict=True):
            for s, kwh, gap_ms in integrate(a, pa, b, pb, self.max_gap_ms,
                                            self.calendar.between(a, b)):
                t = self._tally(s)
                t.kwh += kwh
                t.gap_ms += gap_ms

    def close(self, upto: int) -> list[ShiftTally]:
        """Pop the tallies of shifts that ended at or before ``upto``."""
        done = [t for start, t in sorted(self.tallies.items()) if t.slot.end <= upto]
        for t in done:
            del self.tallies[t.slot.start]
        return done

    def summary(self, now_ms: int) -> tuple[OeeNow | None, EnergyNow | None]:
        """The newest shift's OEE and energy so far, for the twin."""
        if not self.tallies:
            return None, None
        r = self.tallies[max(self.tallies)].record(self.info, False, now_ms)
        oee = OeeNow(r.shift, r.shift_start, r.availability, r.performance, r.quality,
                     r.oee, r.parts, r.good, r.rejects)
        energy = (EnergyNow(r.shift, r.kwh, r.kwh_per_part, r.power_kw)
                  if r.kwh is not None else None)
        return oee, energy
