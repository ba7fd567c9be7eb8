"""The digital twin: each machine's current state on the compacted ``<prefix>.twin`` topic.

One message per update of one machine, keyed by the machine's ISA-95 path; compaction
keeps the newest per machine, so reading the topic from the beginning gives the whole
plant's current state. The value (``millstream.twin.v1``, JSON Schema in
``schemas/jsonschema/millstream.twin.json``)::

    {"schema": "millstream.twin.v1", "machine": "acme/plant1/machining/line1/cnc-01",
     "site": "plant1", "area": "machining", "line": "line1", "name": "cnc-01",
     "state": "running", "state_since": 1763760000000, "updated": 1763760012345,
     "tags": {"spindle_temp": {"path": "...", "value": 61.8, "text": null, "unit": "degC",
              "quality": "GOOD", "ts": 1763760012300, "low": 20, "high": 85}, ...},
     "alarms": [{"alarm_id": "...", "severity": "high", "state": "active", ...}],
     "last_command": {"command_id": "...", "setpoint": "...", "value": 5000,
                      "status": "applied", "reason": "...", "at": ..., "readback": 5000},
     "oee": {"shift": "early", "shift_start": ..., "availability": 0.9, ...} | null,
     "energy": {"shift": "early", "kwh": 12.5, "kwh_per_part": 0.8, "power_kw": 9.1} | null}

Fields beyond the brief's v1 list (compatible additions, readers may ignore them): alarm
entries carry ``active``, ``acknowledged`` and ``version``; ``last_command`` carries
``readback``. A reader ignores fields it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from schemas.exceptions import ContractError
from schemas.jsondoc import dump_compact, load_object, plain

__all__ = ["QUALITY_NAMES", "SCHEMA", "EnergyNow", "LastCommand", "MachineState", "OeeNow",
           "TagValue", "TwinAlarm", "TwinRecord"]

SCHEMA = "millstream.twin.v1"
QUALITY_NAMES = ("GOOD", "UNCERTAIN", "BAD")  # by Quality value 0, 1, 2


class MachineState(str, Enum):
    RUNNING = "running"
    IDLE = "idle"  # not running, no fault: waiting, starved, blocked
    FAULT = "fault"
    MAINTENANCE = "maintenance"  # planned: the catalog or a maintenance tag says so
    UNKNOWN = "unknown"  # no usable running/fault reading yet, or the last one was BAD


_NUM = (int, float)
_T = TypeVar("_T")


def _get(doc: dict[str, Any], name: str, types: tuple[type, ...], where: str,
         nullable: bool = False) -> Any:
    value = doc.get(name)
    if value is None:
        if nullable and name in doc:
            return None
        raise ContractError("bad-field", f"{where}{name} is missing"
                            + ("" if not nullable else " (null is allowed, absent is not)"))
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ContractError("bad-field", f"{where}{name}={value!r} must be {types[0].__name__}")
    return value


@dataclass(frozen=True, slots=True)
class TagValue:
    """The last reading of one tag, with what the catalog says about it."""

    path: str
    value: float | None  # null: the reading had no value (BAD), or a text tag
    text: str | None
    unit: str
    quality: str  # GOOD, UNCERTAIN or BAD
    ts: int  # source timestamp, Unix ms
    low: float | None  # the catalog's normal range
    high: float | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str) -> TagValue:
        quality = _get(doc, "quality", (str,), where)
        if quality not in QUALITY_NAMES:
            raise ContractError("bad-field", f"{where}quality={quality!r} is not one of "
                                f"{list(QUALITY_NAMES)}")
        return cls(_get(doc, "path", (str,), where), _get(doc, "value", _NUM, where, True),
                   _get(doc, "text", (str,), where, True), _get(doc, "unit", (str,), where),
                   quality, _get(doc, "ts", (int,), where),
                   _get(doc, "low", _NUM, where, True), _get(doc, "high", _NUM, where, True))


@dataclass(frozen=True, slots=True)
class TwinAlarm:
    """An alarm episode of the machine that is active or not yet acknowledged."""

    alarm_id: str
    severity: str
    state: str
    message: str
    started_at: int
    tags: list[str]
    active: bool = True
    acknowledged: bool = False
    version: int = 0


@dataclass(frozen=True, slots=True)
class LastCommand:
    """The newest command result of the machine (by ``at``)."""

    command_id: str
    setpoint: str  # tag path
    value: float  # the value requested
    status: str  # applied, rejected, failed, dry-run
    reason: str  # the executor's detail: why refused or failed, or what was done
    at: int  # executed_at, Unix ms
    readback: float | None = None


@dataclass(frozen=True, slots=True)
class OeeNow:
    """OEE of the running shift so far (event time)."""

    shift: str
    shift_start: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    parts: float
    good: float
    rejects: float


@dataclass(frozen=True, slots=True)
class EnergyNow:
    shift: str
    kwh: float
    kwh_per_part: float | None
    power_kw: float | None  # the last power value (kW)


@dataclass(frozen=True, slots=True)
class TwinRecord:
    """One machine's current state: the value of the twin topic."""

    machine: str
    site: str
    area: str
    line: str
    name: str
    state: str  # a MachineState value
    state_since: int  # Unix ms, source time of the reading that set the state
    updated: int  # Unix ms, when this record was built (processing time)
    tags: dict[str, TagValue] = field(default_factory=dict)  # by tag name
    alarms: list[TwinAlarm] = field(default_factory=list)
    last_command: LastCommand | None = None
    oee: OeeNow | None = None
    energy: EnergyNow | None = None

    def key(self) -> bytes:
        return self.machine.encode()

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **plain(self)}

    def encode(self) -> bytes:
        return dump_compact(self.to_dict())

    @classmethod
    def decode(cls, payload: bytes | str | None) -> TwinRecord:
        return cls.from_dict(load_object(payload, "twin record"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TwinRecord:
        if doc.get("schema") != SCHEMA:
            raise ContractError("wrong-schema",
                                f"schema is {doc.get('schema')!r}, want {SCHEMA!r}")
        state = _get(doc, "state", (str,), "")
        if state not in {s.value for s in MachineState}:
            raise ContractError("bad-field", f"state={state!r} is not one of "
                                f"{[s.value for s in MachineState]}")
        tags = _get(doc, "tags", (dict,), "")
        alarms = _get(doc, "alarms", (list,), "")
        return cls(
            machine=_get(doc, "machine", (str,), ""), site=_get(doc, "site", (str,), ""),
            area=_get(doc, "area", (str,), ""), line=_get(doc, "line", (str,), ""),
            name=_get(doc, "name", (str,), ""), state=state,
            state_since=_get(doc, "state_since", (int,), ""),
            updated=_get(doc, "updated", (int,), ""),
            tags={str(k): TagValue.from_dict(_dict(v, f"tags.{k}"), f"tags.{k}.")
                  for k, v in tags.items()},
            alarms=[_typed(TwinAlarm, _dict(a, f"alarms[{i}]"), f"alarms[{i}].")
                    for i, a in enumerate(alarms)],
            last_command=_optional(LastCommand, doc, "last_command"),
            oee=_optional(OeeNow, doc, "oee"),
            energy=_optional(EnergyNow, doc, "energy"),
        )


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError("bad-field", f"{where} must be an object")
    return value


_TYPES: dict[str, tuple[type, ...]] = {
    "alarm_id": (str,), "severity": (str,), "state": (str,), "message": (str,),
    "started_at": (int,), "tags": (list,), "active": (bool,), "acknowledged": (bool,),
    "version": (int,), "command_id": (str,), "setpoint": (str,), "value": _NUM,
    "status": (str,), "reason": (str,), "at": (int,), "readback": _NUM, "shift": (str,),
    "shift_start": (int,), "availability": _NUM, "performance": _NUM, "quality": _NUM,
    "oee": _NUM, "parts": _NUM, "good": _NUM, "rejects": _NUM, "kwh": _NUM,
    "kwh_per_part": _NUM, "power_kw": _NUM,
}
# fields that may be null; fields added after v1's list may also be absent
_NULLABLE = {"readback", "availability", "performance", "quality", "oee", "kwh_per_part",
             "power_kw"}
_OPTIONAL = {"active", "acknowledged", "version", "readback"}


def _typed(cls: type[_T], doc: dict[str, Any], where: str) -> _T:
    kwargs: dict[str, Any] = {}
    for name in cls.__dataclass_fields__:  # type: ignore[attr-defined]
        if name in _OPTIONAL and name not in doc:
            continue
        kwargs[name] = _get(doc, name, _TYPES[name], where, name in _NULLABLE)
    return cls(**kwargs)


def _optional(cls: type[_T], doc: dict[str, Any], name: str) -> _T | None:
    if name not in doc:
        raise ContractError("bad-field", f"{name} is missing (null is allowed)")
    value = doc[name]
    return None if value is None else _typed(cls, _dict(value, name), f"{name}.")
