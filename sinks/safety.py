"""The safety gateway: the last check before a command reaches a machine.

Pure logic, no I/O. :meth:`SafetyGateway.check` refuses a command that names an unknown or
non-writable tag, a machine the setpoint does not belong to, a value outside the
setpoint's ``[min, max]`` or one its Modbus register cannot hold (type range after scale
and offset; a bit takes 0 or 1), a command received after it expired, or one more command than
the per-setpoint rate limit allows in a sliding minute. It fails closed: a setpoint
without limits is refused. A redelivered command never reaches it: the executor answers
it with the result it already published.

Lifecycle: one gateway per executor process; :meth:`check` remembers the times of the
commands it allowed (for the rate limit), so call it once per command.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

from schemas.catalog import Catalog, TagInfo
from schemas.events import Command
from schemas.exceptions import CatalogError
from schemas.modbus import encode_register

__all__ = ["RATE_WINDOW_MS", "SafetyGateway", "Verdict"]

logger = logging.getLogger(__name__)

RATE_WINDOW_MS = 60_000  # the rate limit counts commands per setpoint in this sliding window


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gateway's answer: ``reason`` says why a command was refused (or "ok")."""

    allowed: bool
    reason: str


_OK = Verdict(True, "ok")


class SafetyGateway:
    """Checks commands against the catalog's setpoint limits and a per-setpoint rate limit.

    ``max_rate_per_setpoint`` is the number of commands allowed per setpoint per minute.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        max_rate_per_setpoint: int = 6,
    ) -> None:
        if max_rate_per_setpoint < 1:
            raise ValueError(
                f"max_rate_per_setpoint={max_rate_per_setpoint}: allow at least 1 command "
                "per setpoint per minute"
            )
        self.catalog = catalog
        self.max_rate_per_setpoint = max_rate_per_setpoint
        self._tags = catalog.tags()
        self._allowed_at: dict[str, deque[int]] = {}  # setpoint path -> times allowed

    def check(self, command: Command, now_ms: int) -> Verdict:
        """Decide whether ``command`` may be written (an allowed one counts for the rate)."""
        verdict, info = self._static_checks(command)
        if not verdict.allowed or info is None:
            return verdict
        if now_ms > command.expires_at:
            late = now_ms - command.expires_at
            return Verdict(
                False,
                f"expired: command {command.command_id} expired at {command.expires_at} "
                f"and was received {late} ms later; the rule must issue a fresh command",
            )
        return self._rate_check(info.path, now_ms)

    def _static_checks(self, command: Command) -> tuple[Verdict, TagInfo | None]:
        """The checks that depend only on the command and the catalog."""
        try:
            info = self._tags.get(command.setpoint) or self.catalog.info(command.setpoint)
        except CatalogError as exc:
            return Verdict(False, f"unknown setpoint: {exc}"), None
        spec = info.spec
        if not spec.writable:
            return Verdict(
                False,
                f"not a setpoint: {info.path} is a {spec.kind} tag and cannot be written; "
                "commands may only target tags of kind 'setpoint'",
            ), None
        machine_path = self.catalog.machine_path(info.machine)
        if command.machine != machine_path:
            return Verdict(
                False,
                f"machine mismatch: setpoint {info.path} belongs to {machine_path}, "
                f"but the command names machine {command.machine!r}",
            ), None
        if spec.min is None or spec.max is None:
            return Verdict(
                False,
                f"no limits: setpoint {info.path} has no min/max in the catalog; "
                "add both so the gateway can check values",
            ), None
        value = command.value
        try:
            value = float(value)  # a JSON integer may be too large for a float
        except OverflowError:
            value = math.inf if value > 0 else -math.inf
        if not math.isfinite(value) or not spec.min <= value <= spec.max:
            unit = f" {spec.unit}" if spec.unit else ""
            return Verdict(
                False,
                f"out of limits: value {value:g}{unit} for {info.path} is outside "
                f"[{spec.min:g}, {spec.max:g}]{unit}",
            ), None
        if spec.modbus is not None and (refusal := _register_refusal(info, value)):
            return Verdict(False, refusal), None
        return _OK, info

    def _rate_check(self, path: str, now_ms: int) -> Verdict:
        times = self._allowed_at.setdefault(path, deque())
        while times and times[0] <= now_ms - RATE_WINDOW_MS:
            times.popleft()
        if len(times) >= self.max_rate_per_setpoint:
            wait_s = (times[0] + RATE_WINDOW_MS - now_ms) / 1000
            return Verdict(
                False,
                f"rate limit: {len(times)} commands for {path} in the last minute "
                f"(limit {self.max_rate_per_setpoint}/min); next one allowed in {wait_s:.1f} s",
            )
        times.append(now_ms)
        return _OK


def _register_refusal(info: TagInfo, value: float) -> str | None:
    """Why the setpoint's Modbus register cannot hold ``value`` (None if it can): the
    value, scaled and offset, must fit the register's type, and a bit takes only 0 or 1."""
    reg = info.spec.modbus
    if reg is None:
        return None
    if reg.type in ("bit", "bool") and value not in (0.0, 1.0):
        return (f"not representable: {info.path} is a {reg.type} and takes 0 or 1, "
                f"not {value:g}")
    try:
        encode_register(value, reg, current=0 if reg.type == "bit" else None)
    except ValueError as exc:
        return (f"not representable: value {value:g} for {info.path} does not fit its "
                f"{reg.type} register (scale {reg.scale:g}, offset {reg.offset:g}): {exc}; "
                "narrow the setpoint's min/max in the catalog")
    return None
