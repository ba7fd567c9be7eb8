"""Messages of the control path beyond commands: the control topic and the command audit.

``<prefix>.control`` (compacted, key ``<kind>/<target>``) holds the executor's durable
state: kill switches (``kill-switch/global``, ``kill-switch/<machine path>``), approvals
of two-person commands (``approval/<command_id>``, signed by the approver), commands
waiting for one (``pending/<command_id>``), and writes under way (``inflight/<command_id>``).
A tombstone (no value) clears an entry.

``<prefix>.command-audit`` (append-only) has one :class:`AuditRecord` per decision of the
executor: who issued what and why, the verdict of every check, the value before and after.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from schemas.events import Command, _Event, now_ms
from schemas.signing import Signer

__all__ = ["GLOBAL", "AuditRecord", "ControlKind", "ControlRecord", "finite_or_none"]


class ControlKind(str, Enum):
    KILL_SWITCH = "kill-switch"  # target "global" or a machine path; on true/false
    APPROVAL = "approval"  # target a command id; signed by the second operator
    PENDING = "pending"  # target a command id; payload the command waiting for approval
    INFLIGHT = "inflight"  # target a command id; a write started and has no result yet


GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class ControlRecord(_Event):
    """One entry of the control topic (see the module docstring)."""

    SCHEMA: ClassVar[str] = "millstream.control.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "kind": (str,), "target": (str,), "on": (bool,), "reason": (str,), "at": (int,),
        "payload": (str,), "issuer": (str,), "signature": (str,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"on", "payload", "issuer", "signature"})

    kind: str  # a ControlKind value
    target: str
    on: bool | None
    reason: str
    at: int  # Unix ms
    payload: str | None = None
    issuer: str | None = None
    signature: str | None = None

    def key(self) -> bytes:
        return f"{self.kind}/{self.target}".encode()

    def signed_by(self, signer: Signer) -> ControlRecord:
        doc = signer.sign(self.to_dict())
        doc.pop("schema")
        return ControlRecord(**doc)


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None (a NaN or a 400-digit integer has no row)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class AuditRecord(_Event):
    """One decision of the executor about one command (append-only: never replaced)."""

    SCHEMA: ClassVar[str] = "millstream.command-audit.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "audit_id": (str,), "command_id": (str,), "verdict": (str,), "detail": (str,),
        "issuer": (str,), "rule": (str,), "reason": (str,), "machine": (str,),
        "setpoint": (str,), "value": (int, float), "value_before": (int, float),
        "value_after": (int, float), "checks": (dict,), "dry_run": (bool,), "at": (int,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"value", "value_before", "value_after"})

    audit_id: str
    command_id: str  # "" when the message had none
    verdict: str  # applied, failed, rejected, dry-run, pending
    detail: str  # what happened, or why it was refused
    issuer: str  # who signed it ("" when unsigned)
    rule: str  # the rule that decided it, or "manual" for an operator
    reason: str  # the command's own why
    machine: str
    setpoint: str
    value: float | None  # requested (None when not a finite number)
    value_before: float | None  # read from the device before the write
    value_after: float | None  # read back after the write
    checks: dict[str, str]  # check name -> "ok", "refused: ...", "n/a", "skipped"
    dry_run: bool
    at: int  # Unix ms

    def key(self) -> bytes:
        return self.command_id.encode()

    @classmethod
    def of(cls, command: Command | None, doc: dict[str, Any] | None, *, verdict: str,
           detail: str, checks: dict[str, str], value_before: float | None = None,
           value_after: float | None = None, dry_run: bool = False) -> AuditRecord:
        """The audit record of ``command`` (or, when it did not decode, of the raw ``doc``)."""
        src: dict[str, Any] = command.to_dict() if command is not None else dict(doc or {})

        def text(name: str) -> str:
            v = src.get(name)
            return v if isinstance(v, str) else ""

        return cls(
            audit_id=uuid.uuid4().hex, command_id=text("command_id"), verdict=verdict,
            detail=detail, issuer=text("issuer"), rule=text("rule"), reason=text("reason"),
            machine=text("machine"), setpoint=text("setpoint"),
            value=finite_or_none(src.get("value")), value_before=value_before,
            value_after=value_after, checks=dict(checks), dry_run=dry_run, at=now_ms(),
        )
