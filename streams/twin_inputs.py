"""The twin's inputs, re-keyed by machine: the internal ``<prefix>.twin-inputs`` topic.

Three things change a machine's twin, and they arrive keyed three ways: readings by source
(the worker that owns the source sends a *part*: the tags' last readings, the state, the
shift's KPIs), alarms by machine on a single partition, command results by command id on a
single partition. The worker that consumes the alarms or command-results partition relays
each record here keyed by its machine path (:class:`Relay`), and so do the readings
workers with their parts. All are produced by the workers' one partitioner, so every input
of a machine lands on one partition of twin-inputs, read by one worker: that worker alone
merges and publishes the machine's twin (:mod:`streams.twin_merge`).

The format is internal to the streams stage (``millstream.twin-inputs.v1``):
``{"schema", "kind": "part"|"alarm"|"command", "machine", "body"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.catalog import Catalog
from schemas.events import CommandResult
from schemas.exceptions import CatalogError, ContractError
from schemas.jsondoc import dump_compact, load_object, plain
from schemas.twin import EnergyNow, LastCommand, OeeNow, TwinAlarm

__all__ = ["KINDS", "SCHEMA", "AlarmView", "Relay", "TwinInput", "part_input"]

SCHEMA = "millstream.twin-inputs.v1"
KINDS = ("part", "alarm", "command")
ALARM_SCHEMA = "millstream.alarms.v1"


@dataclass(frozen=True, slots=True)
class TwinInput:
    kind: str
    machine: str  # ISA-95 path: the Kafka key
    body: dict[str, Any]

    def key(self) -> bytes:
        return self.machine.encode()

    def encode(self) -> bytes:
        doc = {"schema": SCHEMA, "kind": self.kind, "machine": self.machine, "body": self.body}
        return dump_compact(doc)

    @classmethod
    def decode(cls, payload: bytes | str | None) -> TwinInput:
        doc = load_object(payload, "twin input")
        if doc.get("schema") != SCHEMA:
            raise ContractError("wrong-schema",
                                f"schema is {doc.get('schema')!r}, want {SCHEMA!r}")
        kind, machine, body = doc.get("kind"), doc.get("machine"), doc.get("body")
        if kind not in KINDS or not isinstance(machine, str) or not isinstance(body, dict):
            raise ContractError("bad-field", f"kind={kind!r} (one of {KINDS}), machine (a "
                                "string) and body (an object) are required")
        return cls(kind, machine, body)


def part_input(machine: str, state: str, state_since: int, tags: dict[str, dict[str, Any]],
               oee: OeeNow | None, energy: EnergyNow | None, at: int) -> TwinInput:
    """The readings' share of a twin, as sent by the worker that owns the source; ``tags``
    by name, each a :class:`schemas.twin.TagValue` as a dict."""
    return TwinInput("part", machine, {
        "state": state, "state_since": state_since, "at": at, "tags": tags,
        "oee": None if oee is None else plain(oee),
        "energy": None if energy is None else plain(energy),
    })


@dataclass(frozen=True, slots=True)
class AlarmView:
    """The fields of a ``millstream.alarms.v1`` record the twin needs (an adapter: the
    alarms stage's own class, ``schemas.alarms.Alarm``, replaces it once both have landed)."""

    alarm_id: str
    asset: str  # the machine path
    tags: list[str]
    severity: str
    state: str
    message: str
    started_at: int
    version: int
    active: bool
    acknowledged: bool

    @classmethod
    def decode(cls, payload: bytes | str | None) -> AlarmView:
        doc = load_object(payload, "alarm")
        if doc.get("schema") != ALARM_SCHEMA:
            raise ContractError("wrong-schema",
                                f"schema is {doc.get('schema')!r}, want {ALARM_SCHEMA!r}")
        want: dict[str, type] = {"alarm_id": str, "asset": str, "tags": list, "severity": str,
                                 "state": str, "message": str, "started_at": int,
                                 "version": int, "active": bool, "acknowledged": bool}
        for name, typ in want.items():
            value = doc.get(name)
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise ContractError("bad-field", f"alarm {name}={value!r} must be "
                                    f"{typ.__name__}")
        if not all(isinstance(t, str) for t in doc["tags"]):
            raise ContractError("bad-field", "alarm tags must be strings")
        return cls(**{name: doc[name] for name in want})


class Relay:
    """Alarms and command results -> twin inputs keyed by machine path."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.machines = {catalog.machine_path(m) for m in catalog.machines}

    def alarm(self, payload: bytes | None) -> TwinInput:
        a = AlarmView.decode(payload)
        if a.asset not in self.machines:
            raise ContractError("unknown-machine", f"alarm {a.alarm_id} names machine "
                                f"{a.asset!r}, which is not in the catalog")
        entry = TwinAlarm(a.alarm_id, a.severity, a.state, a.message, a.started_at,
                          list(a.tags), a.active, a.acknowledged, a.version)
        return TwinInput("alarm", a.asset, plain(entry))

    def command_result(self, payload: bytes | None) -> TwinInput:
        r = CommandResult.decode(payload)
        try:
            info = self.catalog.info(r.setpoint)
        except CatalogError as exc:
            raise ContractError("unknown-tag", f"command result {r.command_id}: {exc}") from exc
        last = LastCommand(r.command_id, info.path, r.requested, r.status, r.detail,
                           r.executed_at, r.readback)
        return TwinInput("command", self.catalog.machine_path(info.machine), plain(last))
