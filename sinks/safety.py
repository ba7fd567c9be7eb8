"""The safety gateway: the last check before a command reaches a machine.

Pure logic, no I/O. :meth:`SafetyGateway.check` refuses a command that names an unknown or
non-writable tag (the allow-list: setpoints of the catalog, on their own machine), a value
outside the setpoint's ``[min, max]`` or one its Modbus register cannot hold, a command
received after it expired, or one more command than the rate limit allows in a sliding
minute (per setpoint and per machine). :meth:`SafetyGateway.check_change` then compares
the value with the one read from the device: at most ``max_step`` away, and no faster
than ``max_rate_per_s`` since the setpoint's last write. It fails closed: a setpoint
without limits is refused. Each :class:`Verdict` names the check that decided it.

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

__all__ = ["CHECKS", "RATE_WINDOW_MS", "SafetyGateway", "Verdict"]

logger = logging.getLogger(__name__)

RATE_WINDOW_MS = 60_000  # the rate limit counts commands per setpoint in this sliding window


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gateway's answer: ``reason`` says why a command was refused (or "ok"), and
    ``check`` which check refused it (the audit's name for it)."""

    allowed: bool
    reason: str
    check: str = ""


_OK = Verdict(True, "ok")
# the audit's names of the gateway's checks, in the order they run
CHECKS = ("allow_list", "range", "ttl", "rate", "step", "rate_of_change")


class SafetyGateway:
    """Checks commands against the catalog's setpoint limits and a per-setpoint rate limit.

    ``max_rate_per_setpoint`` and ``max_rate_per_machine`` are the numbers of commands
    allowed per setpoint and per machine per minute.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        max_rate_per_setpoint: int = 6,
        max_rate_per_machine: int = 20,
    ) -> None:
        for name, rate in (("max_rate_per_setpoint", max_rate_per_setpoint),
                           ("max_rate_per_machine", max_rate_per_machine)):
            if rate < 1:
                raise ValueError(f"{name}={rate}: allow at least 1 command per minute")
        self.catalog = catalog
        self.max_rate_per_setpoint = max_rate_per_setpoint
        self.max_rate_per_machine = max_rate_per_machine
        self._tags = catalog.tags()
        self._allowed_at: dict[str, deque[int]] = {}  # setpoint or machine path -> times

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
                "ttl",
            )
        machine = self.catalog.machine_path(info.machine)
        for key, limit in ((info.path, self.max_rate_per_setpoint),
                           (machine, self.max_rate_per_machine)):
            if (refusal := self._rate_refusal(key, limit, now_ms)) is not None:
                return refusal
        for key in (info.path, machine):
            self._allowed_at[key].append(now_ms)
        return _OK

    def check_change(self, path: str, value: float, current: float,
                     last_write_ms: int | None, now_ms: int) -> Verdict:
        """The step from ``current`` (read from the device) to ``value``, and its rate since
        the setpoint's last write at ``last_write_ms`` (None: no write known)."""
        spec = self.catalog.info(path).spec
        unit = f" {spec.unit}" if spec.unit else ""
        step = abs(value - current)
        if spec.max_step is not None and step > spec.max_step:
            return Verdict(
                False,
                f"step too large: {path} from {current:g} to {value:g}{unit} is a step of "
                f"{step:g}{unit}, more than max_step {spec.max_step:g}{unit}; move it in "
                "smaller steps",
                "step",
            )
        if spec.max_rate_per_s is not None and last_write_ms is not None and step > 0:
            elapsed_s = max(now_ms - last_write_ms, 1) / 1000
            rate = step / elapsed_s
            if rate > spec.max_rate_per_s:
                wait_s = step / spec.max_rate_per_s - elapsed_s
                return Verdict(
                    False,
                    f"too fast: {path} from {current:g} to {value:g}{unit} {elapsed_s:.1f} s "
                    f"after its last write is {rate:g}{unit}/s, more than max_rate_per_s "
                    f"{spec.max_rate_per_s:g}{unit}/s; retry in {wait_s:.1f} s",
                    "rate_of_change",
                )
        return _OK

    def _static_checks(self, command: Command) -> tuple[Verdict, TagInfo | None]:
        """The checks that depend only on the command and the catalog."""
        try:
            info = self._tags.get(command.setpoint) or self.catalog.info(command.setpoint)
        except CatalogError as exc:
            return Verdict(False, f"unknown setpoint: {exc}", "allow_list"), None
        spec = info.spec
        if not spec.writable:
            return Verdict(
                False,
                f"not a setpoint: {info.path} is a {spec.kind} tag and cannot be written; "
                "commands may only target tags of kind 'setpoint'",
                "allow_list",
            ), None
        machine_path = self.catalog.machine_path(info.machine)
        if command.machine != machine_path:
            return Verdict(
                False,
                f"machine mismatch: setpoint {info.path} belongs to {machine_path}, "
                f"but the command names machine {command.machine!r}",
                "allow_list",
            ), None
        if spec.min is None or spec.max is None:
            return Verdict(
                False,
                f"no limits: setpoint {info.path} has no min/max in the catalog; "
                "add both so the gateway can check values",
                "range",
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
                "range",
            ), None
        if spec.modbus is not None and (refusal := _register_refusal(info, value)):
            return Verdict(False, refusal, "range"), None
        return _OK, info

    def _rate_refusal(self, key: str, limit: int, now_ms: int) -> Verdict | None:
        times = self._allowed_at.setdefault(key, deque())
        while times and times[0] <= now_ms - RATE_WINDOW_MS:
            times.popleft()
        if len(times) < limit:
            return None
        wait_s = (times[0] + RATE_WINDOW_MS - now_ms) / 1000
        return Verdict(
            False,
            f"rate limit: {len(times)} commands for {key} in the last minute "
            f"(limit {limit}/min); next one allowed in {wait_s:.1f} s",
            "rate",
        )


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
