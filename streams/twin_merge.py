"""Merging a machine's twin inputs into the record of the compacted twin topic.

:class:`TwinMerger` holds, per machine, the newest part from the readings worker (state,
state_since, shift KPIs), every tag's newest reading across parts (by source timestamp,
so a part from a worker that took over a source with less history does not erase tags),
the alarm episodes that are active or not yet acknowledged (newest version wins; a closed
episode is remembered so that a redelivered older version does not bring it back), and the
newest command result (by ``executed_at``). Each input that changes something gives the
machine's whole :class:`schemas.twin.TwinRecord`; the readings' rate limit is applied where
the parts are made (:class:`streams.twin.TwinState`), alarms and commands go out at once.

After a restart or a rebalance the merger is seeded from the twin topic itself
(:meth:`seed`): the newest record of each machine, unless it holds a newer one.

Lifecycle: ``TwinMerger(catalog)``; ``seed(records)`` on partition assignment;
``apply(input, now_ms)`` per twin input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.catalog import Catalog, MachineSpec
from schemas.exceptions import ContractError
from schemas.twin import (
    EnergyNow,
    LastCommand,
    MachineState,
    OeeNow,
    TagValue,
    TwinAlarm,
    TwinRecord,
)
from streams.twin_inputs import TwinInput

__all__ = ["TwinMerger"]

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
MAX_CLOSED = 1000  # closed alarm ids remembered per machine


@dataclass(slots=True)
class _Twin:
    record: TwinRecord
    part_at: int = -1  # processing time of the newest part applied
    closed: dict[str, int] = field(default_factory=dict)  # alarm id -> version when closed


class TwinMerger:
    def __init__(self, catalog: Catalog) -> None:
        self.specs: dict[str, MachineSpec] = {catalog.machine_path(m): m
                                              for m in catalog.machines}
        self.site = catalog.site
        self.twins: dict[str, _Twin] = {}
        self.count = {"parts": 0, "alarms": 0, "commands": 0, "ignored": 0, "published": 0}

    def _twin(self, machine: str) -> _Twin:
        t = self.twins.get(machine)
        if t is None:
            m = self.specs.get(machine)
            if m is None:
                raise ContractError("unknown-machine",
                                    f"machine {machine!r} is not in the catalog")
            t = self.twins[machine] = _Twin(TwinRecord(
                machine, self.site, m.area, m.line, m.name, MachineState.UNKNOWN.value, 0, 0))
        return t

    def seed(self, records: Iterable[TwinRecord]) -> int:
        """Take the twin topic's newest records where they are newer than what is held."""
        n = 0
        for rec in records:
            held = self.twins.get(rec.machine)
            if rec.machine not in self.specs or (held is not None
                                                 and held.record.updated >= rec.updated):
                continue
            self.twins[rec.machine] = _Twin(rec)
            n += 1
        return n

    def apply(self, inp: TwinInput, now_ms: int) -> TwinRecord | None:
        """The machine's new record, or None when the input changed nothing."""
        t = self._twin(inp.machine)
        try:
            new: TwinRecord | None
            if inp.kind == "part":
                new = self._part(t, inp.body)
            elif inp.kind == "alarm":
                new = self._alarm(t, _make(TwinAlarm, inp.body))
            else:
                new = self._command(t, _make(LastCommand, inp.body))
        except (TypeError, ValueError, KeyError) as exc:
            raise ContractError("bad-field", f"twin input {inp.kind} of {inp.machine}: "
                                f"{type(exc).__name__}: {exc}") from exc
        self.count[inp.kind + "s"] += 1
        if new is None:
            self.count["ignored"] += 1
            return None
        t.record = replace(new, updated=max(now_ms, t.record.updated + 1))
        self.count["published"] += 1
        return t.record

    def _part(self, t: _Twin, body: dict[str, Any]) -> TwinRecord:
        tags = dict(t.record.tags)
        for name, doc in body["tags"].items():
            tv = TagValue.from_dict(doc, f"tags.{name}.")
            old = tags.get(name)
            if old is None or tv.ts >= old.ts:
                tags[name] = tv
        rec = replace(t.record, tags=tags)
        at = int(body["at"])
        if at < t.part_at:  # an older part (another worker's, before a handover)
            return rec
        t.part_at = at
        MachineState(body["state"])
        oee, energy = body.get("oee"), body.get("energy")
        return replace(rec, state=body["state"], state_since=int(body["state_since"]),
                       oee=None if oee is None else _make(OeeNow, oee),
                       energy=None if energy is None else _make(EnergyNow, energy))

    def _alarm(self, t: _Twin, a: TwinAlarm) -> TwinRecord | None:
        held = {x.alarm_id: x for x in t.record.alarms}
        old = held.get(a.alarm_id)
        if (old is not None and old.version >= a.version) or \
                t.closed.get(a.alarm_id, -1) >= a.version:
            return None  # a redelivery or an older version
        if a.active or not a.acknowledged:
            held[a.alarm_id] = a
        else:  # over: cleared and acknowledged
            held.pop(a.alarm_id, None)
            t.closed[a.alarm_id] = a.version
            if len(t.closed) > MAX_CLOSED:
                del t.closed[next(iter(t.closed))]
            if old is None:
                return None
        alarms = sorted(held.values(),
                        key=lambda x: (SEVERITY_RANK.get(x.severity, 9), -x.started_at))
        return replace(t.record, alarms=alarms)

    def _command(self, t: _Twin, c: LastCommand) -> TwinRecord | None:
        old = t.record.last_command
        if old is not None and (old.at, old.command_id) >= (c.at, c.command_id):
            return None
        return replace(t.record, last_command=c)


def _make(cls: Any, doc: dict[str, Any]) -> Any:
    """A contract dataclass from an internal dict (unknown keys refused)."""
    return cls(**doc)
