"""The readings' share of the digital twin: every tag's last reading and the machine state.

:class:`TwinState` keeps the last reading of every catalog tag in NumPy arrays indexed by
tag number. Per frame it finds each tag's newest reading with one lexsort (by tag, then
source timestamp, then sequence number) and keeps it where it is not older than what it
holds, so frames may arrive out of order. Machines whose state tags changed get their
state again (:func:`streams.roles.machine_state`): fault > running > idle, maintenance when
the catalog or a maintenance tag says so. A machine that changed is sent at most
``streams.twin_max_hz`` times a second (processing time), and at once when its state
changes.

What it sends is a *part* (:class:`streams.twin_inputs.TwinInput` of kind ``part``): the
worker that owns the machine's twin merges it with alarms and command results
(:mod:`streams.twin_merge`).

Lifecycle: ``TwinState(catalog, roles)``; ``observe(...)`` per frame; ``touch(machines)``
when their KPIs moved; ``due(now_ms, summary)`` after each frame and on the timer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.catalog import Catalog, TagSpec
from schemas.readings import Quality
from schemas.twin import QUALITY_NAMES, EnergyNow, MachineState, OeeNow
from streams.roles import IS_STATE, STATE_ROLES, PlantRoles, Role, machine_state
from streams.twin_inputs import TwinInput, part_input

__all__ = ["TwinState"]

Summary = Callable[[int, int], tuple[OeeNow | None, EnergyNow | None]]


class TwinState:
    """Last readings and machine states of the catalog's machines, in one worker."""

    def __init__(self, catalog: Catalog, roles: PlantRoles) -> None:
        self.roles = roles
        n = len(roles.paths)
        self.ts: npt.NDArray[np.int64] = np.full(n, -1, np.int64)  # -1: no reading yet
        self.value: npt.NDArray[np.float64] = np.full(n, np.nan)
        self.quality: npt.NDArray[np.int8] = np.zeros(n, np.int8)
        self.text: dict[int, str | None] = {}
        self.min_gap_ms = 1000.0 / catalog.streams.twin_max_hz
        infos = catalog.tags()
        self.specs: list[TagSpec] = [infos[p].spec for p in roles.paths]
        k = len(roles.machines)
        self.tags_of: list[list[int]] = [[] for _ in range(k)]
        self.state_ids: list[dict[Role, int]] = [{} for _ in range(k)]
        for i, (mi, role) in enumerate(zip(roles.machine_of.tolist(), roles.role_of.tolist(),
                                           strict=True)):
            self.tags_of[mi].append(i)
            if Role(role) in STATE_ROLES:
                self.state_ids[mi][Role(role)] = i
        self.state = [MachineState.UNKNOWN] * k
        self.state_since = [0] * k
        self.sent_at = [-(2**62)] * k  # processing ms of the last part sent
        self.dirty: set[int] = set()
        self.urgent: set[int] = set()  # state changed: send without waiting

    def observe(self, ids: npt.NDArray[np.int64], ts: npt.NDArray[np.int64],
                value: npt.NDArray[np.float64], quality: npt.NDArray[np.int8],
                seq: npt.NDArray[np.int64], text: list[str | None] | None = None) -> None:
        """Keep each tag's newest reading of the frame (tags as PlantRoles numbers)."""
        if len(ids) == 0:
            return
        order = np.lexsort((seq, ts, ids))
        sid = ids[order]
        last = order[np.r_[sid[1:] != sid[:-1], True]]  # each tag's newest reading
        uid = ids[last]
        newer = ts[last] >= self.ts[uid]
        if not newer.any():
            return
        pos, uid = last[newer], uid[newer]
        before = self._state_inputs(uid)
        self.ts[uid] = ts[pos]
        self.value[uid] = value[pos]
        self.quality[uid] = quality[pos]
        if text is not None:
            for p, i in zip(pos.tolist(), uid.tolist(), strict=True):
                self.text[i] = text[p]
        elif self.text:  # readings without text replace a text tag's last text
            for i in uid.tolist():
                self.text.pop(i, None)
        changed = np.unique(self.roles.machine_of[uid]).tolist()
        self.dirty.update(changed)
        # a machine's state is derived again only where a state tag's reading now says
        # something else (on/off, BAD or not); a state tag re-sent unchanged costs nothing
        moved = IS_STATE[self.roles.role_of[uid]] & (self._state_inputs(uid) != before)
        if moved.any():
            for mi in np.unique(self.roles.machine_of[uid[moved]]).tolist():
                self._restate(mi)

    def _state_inputs(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int8]:
        """What :meth:`_restate` reads of each tag, as one code: 0 unknown (no reading,
        BAD or NaN), 1 off, 2 on."""
        v = self.value[ids]
        usable = (self.ts[ids] >= 0) & (self.quality[ids] != Quality.BAD) & ~np.isnan(v)
        return np.where(usable, np.where(v >= 0.5, 2, 1), 0).astype(np.int8)

    def _restate(self, mi: int) -> None:
        def known(role: Role) -> bool | None:
            i = self.state_ids[mi].get(role)
            if i is None or self.ts[i] < 0 or self.quality[i] == Quality.BAD:
                return None
            v = self.value[i]
            return None if v != v else bool(v >= 0.5)
        new = machine_state(known(Role.RUNNING), known(Role.FAULT), known(Role.MAINTENANCE),
                            self.roles.machines[mi].spec.maintenance)
        if new is not self.state[mi]:
            self.state[mi] = new
            self.state_since[mi] = int(max(self.ts[i] for i in self.state_ids[mi].values()))
            self.urgent.add(mi)

    def forget(self, machines: Iterable[int]) -> None:
        """These machines moved to another worker: send nothing for them until their
        readings come here again."""
        for mi in machines:
            self.dirty.discard(mi)
            self.urgent.discard(mi)

    def touch(self, machines: Iterable[int]) -> None:
        """These machines' KPIs changed: send them when the rate allows."""
        self.dirty.update(machines)

    def due(self, now_ms: int, summary: Summary,
            machines: set[int] | None = None) -> list[TwinInput]:
        """The parts to send now: changed machines (of ``machines``, or all) whose rate
        allows, and state changes."""
        out: list[TwinInput] = []
        for mi in sorted(self.dirty if machines is None else self.dirty & machines):
            if mi not in self.urgent and now_ms - self.sent_at[mi] < self.min_gap_ms:
                continue
            self.sent_at[mi] = now_ms
            self.dirty.discard(mi)
            self.urgent.discard(mi)
            oee, energy = summary(mi, now_ms)
            info = self.roles.machines[mi]
            out.append(part_input(info.path, self.state[mi].value, self.state_since[mi],
                                  self._tags(mi), oee, energy, now_ms))
        return out

    def _tags(self, mi: int) -> dict[str, dict[str, Any]]:
        """Each tag's last reading as a :class:`schemas.twin.TagValue` dict, by name."""
        ids = self.tags_of[mi]
        ts, value, quality = (self.ts[ids].tolist(), self.value[ids].tolist(),
                              self.quality[ids].tolist())
        out: dict[str, dict[str, Any]] = {}
        for i, t, v, q in zip(ids, ts, value, quality, strict=True):
            if t < 0:
                continue
            spec = self.specs[i]
            out[spec.name] = {"path": self.roles.paths[i], "value": None if v != v else v,
                              "text": self.text.get(i), "unit": spec.unit,
                              "quality": QUALITY_NAMES[q], "ts": t, "low": spec.low,
                              "high": spec.high}
        return out
