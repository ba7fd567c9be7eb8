"""The two-person rule: a command to a ``two_person`` setpoint waits for a second operator.

Pure state, fed from the control topic. A parked command (``pending/<id>``) is decided by
:meth:`Approvals.decide`: approved when an ``approval/<id>`` record carries a valid
signature of a trusted identity other than the command's issuer, refused when it expires
first. An approval signed by the issuer itself, or not signed by a trusted key, does not
count (it is logged and the command keeps waiting).

Lifecycle: ``park()`` when a command arrives, ``on_record()`` for each control record,
``decide(now)`` in the executor's loop, ``clear()`` once a decision is published.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from schemas.control import ControlKind, ControlRecord
from schemas.events import Command
from schemas.exceptions import ContractError
from schemas.signing import TrustedKeys, verify_doc

__all__ = ["Approvals", "Decision"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """``approved_by`` is set when approved; otherwise ``refusal`` says why not."""

    command: Command
    approved_by: str | None
    refusal: str | None


class Approvals:
    """Commands waiting for a second operator, and the approvals seen; thread-safe."""

    def __init__(self, trusted: TrustedKeys) -> None:
        self.trusted = trusted
        self._pending: dict[str, Command] = {}
        self._approvals: dict[str, ControlRecord] = {}
        self._lock = threading.Lock()

    def park(self, command: Command) -> None:
        with self._lock:
            self._pending[command.command_id] = command

    def is_pending(self, command_id: str) -> bool:
        with self._lock:
            return command_id in self._pending

    def on_record(self, record: ControlRecord | None, kind: str, target: str) -> None:
        """A control record (None: a tombstone of ``kind/target``)."""
        with self._lock:
            if kind == ControlKind.APPROVAL.value:
                if record is None:
                    self._approvals.pop(target, None)
                else:
                    self._approvals[target] = record
            elif kind == ControlKind.PENDING.value:
                if record is None or not record.payload:
                    self._pending.pop(target, None)
                else:
                    self._reload(target, record.payload)

    def _reload(self, command_id: str, payload: str) -> None:
        """A command parked before a restart: its own signature is checked again."""
        try:
            doc = json.loads(payload)
            command = Command.from_dict(doc)
        except (ValueError, ContractError) as exc:
            logger.error("pending command %s cannot be read back (%s); ignored", command_id,
                         exc)
            return
        refusal = verify_doc(doc, self.trusted)
        if refusal is not None or command.command_id != command_id:
            logger.error("pending command %s is not authentic (%s); ignored", command_id,
                         refusal or "its id differs")
            return
        self._pending[command_id] = command

    def clear(self, command_id: str) -> None:
        with self._lock:
            self._pending.pop(command_id, None)

    def decide(self, now_ms: int) -> list[Decision]:
        """The parked commands that are approved now, or expired without approval."""
        out: list[Decision] = []
        with self._lock:
            for cid, command in list(self._pending.items()):
                by, why = self._approver(command)
                if by is not None:
                    out.append(Decision(command, by, None))
                elif now_ms > command.expires_at:
                    out.append(Decision(command, None, (
                        f"not approved: command {cid} for {command.setpoint} needs a second "
                        f"operator's approval and expired at {command.expires_at} without "
                        f"one{f' ({why})' if why else ''}; send it again and have another "
                        "operator run `millstream command approve ID`")))
        return out

    def _approver(self, command: Command) -> tuple[str | None, str | None]:
        record = self._approvals.get(command.command_id)
        if record is None or not record.on:
            return None, None
        refusal = verify_doc(record.to_dict(), self.trusted)
        if refusal is not None:
            return None, f"an approval was refused: {refusal}"
        if record.issuer == command.issuer:
            return None, (f"an approval by {record.issuer} was refused: the issuer cannot "
                          "approve their own command")
        return record.issuer, None
