"""What the dashboard reads from each topic, decoded into plain dicts for the browser.

Main's contracts (anomalies, aggregates, command audit and results) decode through their
classes in ``schemas/``. The twin (``millstream.twin.v1``) and alarm episodes
(``millstream.alarms.v1``) are read as tolerant readers do: the fields the page shows are
checked, unknown fields are passed on, so a compatible addition never breaks the page.
A message that does not decode raises :class:`ContractError` naming the fault; the feed
counts it and keeps going (the message stays on its topic: the dashboard only reads).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from schemas.aggregates import SCHEMA as FRAME_SCHEMA
from schemas.aggregates import AggregateFrame
from schemas.control import AuditRecord
from schemas.events import Aggregate, Anomaly, CommandResult
from schemas.exceptions import ContractError
from schemas.jsondoc import load_object

__all__ = ["ALARM_SCHEMA", "TWIN_SCHEMA", "Kind", "decode"]

TWIN_SCHEMA = "millstream.twin.v1"
ALARM_SCHEMA = "millstream.alarms.v1"
SEVERITIES = ("low", "medium", "high", "critical")


class Kind(str, Enum):
    """One kind per topic the dashboard follows."""

    TWIN = "twin"
    ALARM = "alarm"
    ANOMALY = "anomaly"
    AGGREGATES = "aggregates"
    AUDIT = "audit"
    RESULT = "result"


def _field(doc: dict[str, Any], name: str, types: tuple[type, ...], what: str) -> Any:
    value = doc.get(name)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ContractError("bad-field", f"{what} {name}={value!r} must be "
                            f"{' or '.join(t.__name__ for t in types)}")
    return value


def _schema(doc: dict[str, Any], want: str) -> None:
    if doc.get("schema") != want:
        raise ContractError("wrong-schema", f"schema is {doc.get('schema')!r}, want {want!r}")


def decode_twin(payload: bytes) -> dict[str, Any]:
    """A twin record, checked for what the machine card needs."""
    doc = load_object(payload, "twin record")
    _schema(doc, TWIN_SCHEMA)
    for name in ("machine", "state"):
        _field(doc, name, (str,), "twin")
    _field(doc, "updated", (int,), "twin")
    tags = _field(doc, "tags", (dict,), "twin")
    for name, tag in tags.items():
        if not isinstance(tag, dict):
            raise ContractError("bad-field", f"twin tags.{name} must be an object")
    if not isinstance(doc.get("alarms", []), list):
        raise ContractError("bad-field", "twin alarms must be an array")
    return doc


def decode_alarm(payload: bytes) -> dict[str, Any]:
    """One state change of an alarm episode."""
    doc = load_object(payload, "alarm record")
    _schema(doc, ALARM_SCHEMA)
    for name in ("alarm_id", "asset", "severity", "state"):
        _field(doc, name, (str,), "alarm")
    _field(doc, "started_at", (int,), "alarm")
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ContractError("bad-field", "alarm tags must be an array of tag paths")
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ContractError("bad-field", f"alarm version={version!r} must be int")
    return doc


def decode_aggregates(payload: bytes) -> list[dict[str, Any]]:
    """A frame of window results (v2) or a single one (v1), as rows."""
    doc = load_object(payload, "aggregates message")
    if doc.get("schema") == Aggregate.SCHEMA:
        rows = [Aggregate.from_dict(doc)]
    elif doc.get("schema") == FRAME_SCHEMA:
        rows = AggregateFrame.from_dict(doc).aggregates()
    else:
        raise ContractError("wrong-schema", f"schema is {doc.get('schema')!r}, want "
                            f"{FRAME_SCHEMA!r} or {Aggregate.SCHEMA!r}")
    return [r.to_dict() for r in rows]


def decode(kind: Kind, payload: bytes | None) -> Any:
    """The message of ``kind``'s topic as JSON-ready data; None is a tombstone (twin)."""
    if payload is None and kind is Kind.TWIN:
        return None
    if payload is None:
        raise ContractError("empty-message", f"the {kind.value} message has no value")
    if kind is Kind.TWIN:
        return decode_twin(payload)
    if kind is Kind.ALARM:
        return decode_alarm(payload)
    if kind is Kind.AGGREGATES:
        return decode_aggregates(payload)
    if kind is Kind.ANOMALY:
        return Anomaly.decode(payload).to_dict()
    if kind is Kind.AUDIT:
        return AuditRecord.decode(payload).to_dict()
    return CommandResult.decode(payload).to_dict()
