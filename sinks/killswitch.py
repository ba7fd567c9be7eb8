"""The kill switch: a global and a per-machine stop, kept on the compacted control topic.

Pure state. Turning a switch on is honoured from anyone (stopping is always safe);
turning it off needs the signature of a trusted operator, so a forged message can never
release a stop. While a switch is on, :meth:`KillSwitches.refusal` names it and why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from schemas.control import GLOBAL, ControlRecord

__all__ = ["KillSwitches"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Switch:
    by: str
    reason: str
    at: int


class KillSwitches:
    """Switches that are on, by target (``global`` or a machine path); thread-safe."""

    def __init__(self) -> None:
        self._on: dict[str, _Switch] = {}
        self._lock = threading.Lock()

    def apply(self, record: ControlRecord, verified: bool) -> None:
        """Take ``record`` into account; ``verified``: its signature is a trusted one."""
        by = record.issuer or "unsigned"
        with self._lock:
            if record.on:
                self._on[record.target] = _Switch(by, record.reason, record.at)
                logger.warning("kill switch ON for %s by %s: %s", record.target, by,
                               record.reason)
            elif not verified:
                logger.error("ignored a request by %s to turn the kill switch for %s off: "
                             "it is not signed by a trusted operator", by, record.target)
            elif self._on.pop(record.target, None) is not None:
                logger.warning("kill switch off for %s by %s: %s", record.target, by,
                               record.reason)

    def refusal(self, machine: str) -> str | None:
        """Why commands to ``machine`` are refused now (None when no switch is on)."""
        with self._lock:
            for target in (GLOBAL, machine):
                s = self._on.get(target)
                if s is not None:
                    scope = "global" if target == GLOBAL else f"for machine {target}"
                    return (f"kill switch: the {scope} kill switch is on (set by {s.by} at "
                            f"{s.at}: {s.reason}); every command is refused until an "
                            "operator turns it off (`millstream command kill-switch off`)")
        return None

    def active(self) -> list[str]:
        with self._lock:
            return sorted(self._on)
