"""OEE and energy per machine and shift on the worker's event-time machinery.

:class:`KpiEngine` keeps, per (source, partition), a :class:`streams.watermarks.Watermark`
with the catalog's lateness and idle timeout (the windows' rule: the highest source
timestamp minus the lateness, moved on by the worker's clock when the source is silent)
and the readings of KPI tags not yet released. A frame's relevant readings (state tags,
part and reject counters, power or current: picked with one NumPy mask) wait until the
watermark passes them, then go to each machine's :class:`streams.timeline.MachineTimeline`
in timestamp order, so readings reordered within the lateness count as if in order. A reading
older than what its machine already tallied is late: counted (``late``), not applied.

Out: a :class:`schemas.kpis.KpiRecord` per machine and open shift whenever the watermark
crosses a multiple of ``kpis.interval_s`` (``final: false``), and a final one once the
watermark is ``kpis.energy_max_gap_s`` past the shift's end (every power segment that
reaches into the shift is known by then).

Lifecycle: ``KpiEngine(catalog, roles)``; ``observe(...)`` per frame; ``tick(now_ms)`` on
the worker's timer; ``drop(partition)`` (or ``keep_partitions(owned)``) after a rebalance;
``summary(machine)`` for the twin. :mod:`streams.kpi_state` saves and restores a
partition's share for the worker's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from schemas.catalog import Catalog
from schemas.kpis import KpiRecord
from schemas.twin import EnergyNow, OeeNow
from streams.roles import PlantRoles, Role
from streams.shifts import ShiftCalendar
from streams.timeline import MachineTimeline
from streams.watermarks import Watermark

__all__ = ["RELEASE_STEP_MS", "KpiEngine", "KpiStream"]

# readings are released to the timelines when the watermark moved this far (event time):
# fewer, larger batches; the KPIs are at most this much later than the watermark
RELEASE_STEP_MS = 1000

_Cols = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
              npt.NDArray[np.float64], npt.NDArray[np.int8]]  # ts, seq, tag id, value, quality


@dataclass(slots=True)
class KpiStream:
    """One (source, partition)'s watermark and the KPI readings it has not released."""

    wm: Watermark
    pending: list[_Cols] = field(default_factory=list)
    machines: set[int] = field(default_factory=set)
    bucket: int | None = None  # watermark // interval at the last partial records
    released: int | None = None  # the watermark readings were last released up to


class KpiEngine:
    """KPIs of the machines whose readings this worker processes."""

    def __init__(self, catalog: Catalog, roles: PlantRoles) -> None:
        spec = catalog.kpis
        self.roles = roles
        self.calendar = ShiftCalendar(spec)
        self.interval_ms = max(1, int(spec.interval_s * 1000))
        self.max_gap_ms = int(spec.energy_max_gap_s * 1000)
        self.lateness_ms = catalog.streams.lateness_ms
        self.idle_ms = catalog.streams.idle_timeout_ms
        self.timelines: dict[int, MachineTimeline] = {}
        self.streams: dict[tuple[str, int], KpiStream] = {}
        self.late = 0  # readings older than their machine's tally: not applied

    def observe(self, source: str, partition: int, ids: npt.NDArray[np.int64],
                ts: npt.NDArray[np.int64], value: npt.NDArray[np.float64],
                quality: npt.NDArray[np.int8], seq: npt.NDArray[np.int64],
                now_ms: int) -> list[KpiRecord]:
        """One frame's readings (tags as :class:`PlantRoles` numbers); the records due."""
        key = (source, partition)
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = KpiStream(Watermark(self.lateness_ms))
        if len(ids) == 0:
            return []
        pick = self.roles.role_of[ids] != Role.NONE
        behind = False  # readings the watermark has passed already: late, counted at once
        if pick.any():
            sel = ids[pick]
            st.pending.append((ts[pick], seq[pick], sel, value[pick], quality[pick]))
            st.machines.update(np.unique(self.roles.machine_of[sel]).tolist())
            behind = st.wm.value is not None and int(ts[pick].min()) <= st.wm.value
        moved = st.wm.observe(int(ts.max()), now_ms)
        if behind or (moved is not None and (st.released is None
                                             or moved - st.released >= RELEASE_STEP_MS)):
            return self._release(st, now_ms)
        return []

    def tick(self, now_ms: int, partition: int | None = None) -> list[KpiRecord]:
        """Release what the watermarks passed since the last release, and move the
        watermarks of silent sources on by the clock (their shifts still end); of one
        readings partition's sources, or of all."""
        out: list[KpiRecord] = []
        for key, st in self.streams.items():
            if partition is not None and key[1] != partition:
                continue
            idle = st.wm.idle(now_ms, self.idle_ms) is not None
            if idle or (st.wm.value is not None and st.wm.value != st.released):
                out += self._release(st, now_ms)
        return out

    def keep_partitions(self, partitions: set[int]) -> set[int]:
        """Forget the streams of readings partitions this worker no longer owns, so that
        their silent watermarks do not run on and tally a machine another worker now
        follows; the machines forgotten."""
        return self._forget([k for k in self.streams if k[1] not in partitions])

    def drop(self, partition: int) -> set[int]:
        """Forget one readings partition's streams (it moved, or is about to be restored
        from its checkpoint); the machines no other partition's stream carries, whose
        timelines went with it."""
        return self._forget([k for k in self.streams if k[1] == partition])

    def _forget(self, gone: list[tuple[str, int]]) -> set[int]:
        machines = {m for k in gone for m in self.streams.pop(k).machines}
        machines -= {m for st in self.streams.values() for m in st.machines}
        for m in machines:
            self.timelines.pop(m, None)
        return machines

    def summary(self, machine: int, now_ms: int) -> tuple[OeeNow | None, EnergyNow | None]:
        tl = self.timelines.get(machine)
        return (None, None) if tl is None else tl.summary(now_ms)

    def _timeline(self, machine: int) -> MachineTimeline:
        tl = self.timelines.get(machine)
        if tl is None:
            info = self.roles.machines[machine]
            tl = self.timelines[machine] = MachineTimeline(info, self.calendar, self.max_gap_ms)
        return tl

    def _release(self, st: KpiStream, now_ms: int) -> list[KpiRecord]:
        wm = st.wm.value
        if wm is None:
            return []
        st.released = wm
        if st.pending:
            ts, seq, ids, value, quality = (np.concatenate(c) for c in zip(*st.pending,
                                                                          strict=True))
            order = np.lexsort((seq, ts))
            ready = order[ts[order] <= wm]
            rest = order[ts[order] > wm]
            st.pending = [(ts[rest], seq[rest], ids[rest], value[rest], quality[rest])] \
                if len(rest) else []
            if len(ready):
                ts, ids, value, quality = ts[ready], ids[ready], value[ready], quality[ready]
                machine = self.roles.machine_of[ids]
                by_machine = np.argsort(machine, kind="stable")  # time order kept within
                bounds = np.flatnonzero(np.diff(machine[by_machine])) + 1
                for g in np.split(by_machine, bounds):
                    self.late += self._timeline(int(machine[g[0]])).apply(
                        ts[g], self.roles.role_of[ids[g]], value[g], quality[g])
        out: list[KpiRecord] = []
        bucket = wm // self.interval_ms
        periodic = bucket != st.bucket
        st.bucket = bucket
        for mi in sorted(st.machines):
            tl = self.timelines.get(mi)
            if tl is None or tl.cursor is None:
                continue
            tl.advance(wm)
            info = tl.info
            out += [t.record(info, True, now_ms) for t in tl.close(wm - self.max_gap_ms)]
            if periodic:
                out += [t.record(info, False, now_ms) for _, t in sorted(tl.tallies.items())]
        return out
