"""Rules that turn closed windows and their anomalies into setpoint commands.

``limit``: a window statistic of the rule's tag above (or below) a bound.
``sustained_anomaly``: N consecutive windows of the tag each with at least one anomaly;
a window without one (or a gap: a window with no data) resets the run. With ``on:
alarms`` it fires instead when an alarm episode is raised on the tag's machine with the
tag among its tags.
A rule fires at most once per ``cooldown_s`` of processing time (``now_ms`` is passed in
so tests control it).

Lifecycle: ``RuleEngine(catalog)``; ``evaluate(aggregate, anomalies, now_ms)`` for every
closed window, in window order per tag; ``on_alarms(alarms, now_ms)`` for alarm records.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.alarms import Alarm
from schemas.catalog import Catalog, RuleSpec
from schemas.events import Aggregate, Anomaly, Command

__all__ = ["COMMAND_TTL_MS", "RuleEngine"]

logger = logging.getLogger(__name__)

COMMAND_TTL_MS = 30_000  # a command not executed within this is refused by the executor


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def _num(x: float) -> str:
    return f"{x:.6g}"


@dataclass
class _Rule:
    spec: RuleSpec
    tag: str  # full path
    tag_name: str
    unit: str
    machine: str  # ISA-95 machine path
    setpoint: str  # full path
    last_fired_ms: int | None = None
    run: int = 0  # consecutive anomalous windows (sustained_anomaly)
    last_window_end: int | None = None


class RuleEngine:
    """Evaluates the catalog's rules; counts ``fired`` and ``suppressed`` (cooldown)."""

    def __init__(self, catalog: Catalog) -> None:
        self._by_tag: dict[str, list[_Rule]] = {}
        for spec in catalog.rules:
            info = catalog.info(spec.tag)
            rule = _Rule(
                spec=spec, tag=info.path, tag_name=info.spec.name, unit=info.spec.unit,
                machine=catalog.machine_path(catalog.info(spec.action.setpoint).machine),
                setpoint=catalog.resolve(spec.action.setpoint),
            )
            self._by_tag.setdefault(info.path, []).append(rule)
        self.fired = 0
        self.suppressed = 0

    def evaluate(self, agg: Aggregate, anomalies: Sequence[Anomaly], now_ms: int) -> list[Command]:
        out: list[Command] = []
        for rule in self._by_tag.get(agg.tag, ()):
            if rule.spec.on == "alarms" and rule.spec.kind == "sustained_anomaly":
                continue
            reason = (self._limit(rule, agg) if rule.spec.kind == "limit"
                      else self._sustained(rule, agg, anomalies))
            out += self._fire(rule, reason, now_ms)
        return out

    def on_alarms(self, alarms: Sequence[Alarm], now_ms: int) -> list[Command]:
        """``sustained_anomaly`` rules ``on: alarms``: an episode raised on the rule tag's
        machine that names the tag."""
        out: list[Command] = []
        for alarm in alarms:
            if alarm.action != "raised":
                continue
            for tag in alarm.tags:
                for rule in self._by_tag.get(tag, ()):
                    if rule.spec.on == "alarms" and rule.spec.kind == "sustained_anomaly":
                        out += self._fire(rule, f"alarm {alarm.alarm_id} ({alarm.severity}): "
                                                f"{alarm.message}", now_ms)
        return out

    def _fire(self, rule: _Rule, reason: str | None, now_ms: int) -> list[Command]:
        """The rule's command for ``reason`` (none without one, or within the cooldown)."""
        if reason is None:
            return []
        cooldown_ms = int(rule.spec.cooldown_s * 1000)
        if rule.last_fired_ms is not None and now_ms - rule.last_fired_ms < cooldown_ms:
            self.suppressed += 1
            return []
        rule.last_fired_ms = now_ms
        self.fired += 1
        logger.info("rule %s fired: %s", rule.spec.name, reason)
        return [Command(
            command_id=uuid.uuid4().hex, rule=rule.spec.name, machine=rule.machine,
            setpoint=rule.setpoint, value=float(rule.spec.action.value), reason=reason,
            issued_at=now_ms, expires_at=now_ms + COMMAND_TTL_MS,
        )]

    @staticmethod
    def _limit(rule: _Rule, agg: Aggregate) -> str | None:
        spec = rule.spec
        x = float(getattr(agg, spec.statistic))
        unit = f" {rule.unit}" if rule.unit else ""
        where = f"in window {_hms(agg.window_start)}"
        head = f"{spec.statistic} {rule.tag_name} {_num(x)}{unit}"
        if spec.above is not None and x > spec.above:
            return f"{head} > {_num(spec.above)} {where}"
        if spec.below is not None and x < spec.below:
            return f"{head} < {_num(spec.below)} {where}"
        return None

    @staticmethod
    def _sustained(rule: _Rule, agg: Aggregate, anomalies: Sequence[Anomaly]) -> str | None:
        mine = [a for a in anomalies if a.tag == rule.tag]
        contiguous = rule.last_window_end == agg.window_start
        rule.last_window_end = agg.window_end
        if not mine:
            rule.run = 0
            return None
        rule.run = rule.run + 1 if contiguous else 1
        if rule.run < rule.spec.windows:
            return None
        worst = max(mine, key=lambda a: a.score)
        return (
            f"{rule.run} consecutive anomalous windows of {rule.tag_name} up to window "
            f"{_hms(agg.window_start)} ({worst.feature} {_num(worst.value)}"
            f"{' ' + rule.unit if rule.unit else ''} scored {worst.score:.1f} "
            f"> {_num(worst.threshold)})"
        )
