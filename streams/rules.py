"""Rules that turn closed windows and their anomalies into setpoint commands.

``limit``: a window statistic of the rule's tag above (or below) a bound. Limits that a
single reading decides are the fast path's (:mod:`streams.fastpath`), checked on every
reading; the processor gives this engine the others.
``sustained_anomaly``: N consecutive windows of the tag each with at least one anomaly;
a window without one (or a gap: a window with no data) resets the run. With ``on:
alarms`` it fires instead when an alarm episode is raised on the tag's machine with the
tag among its tags.
A rule fires at most once per ``cooldown_s`` of processing time (``now_ms`` is passed in
so tests control it).

Lifecycle: ``RuleEngine(catalog[, specs])``; ``evaluate(aggregate, anomalies, now_ms)`` for
every closed window, in window order per tag; ``on_alarms(alarms, now_ms)`` for alarm
records; ``snapshot(tags)``/``restore(doc)``/``drop(tags)`` move the rules' memory (last
firing, runs) of a partition's tags between workers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.alarms import Alarm
from schemas.catalog import Catalog, RuleSpec
from schemas.events import Aggregate, Anomaly, Command

__all__ = ["COMMAND_TTL_MS", "Rule", "RuleEngine", "command_for", "command_id", "make_rule"]

logger = logging.getLogger(__name__)

COMMAND_TTL_MS = 30_000  # a command not executed within this is refused by the executor


def command_id(rule: str, tag: str, window_start: int) -> str:
    """A rule fires at most once per window of its tag, so the window names the command:
    the same command replayed after a crash (at-least-once) keeps its id, and the executor
    answers it with its first result instead of writing twice."""
    key = f"{rule}\0{tag}\0{window_start}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def _num(x: float) -> str:
    return f"{x:.6g}"


@dataclass
class Rule:
    """A rule with its tag and setpoint resolved, and its state."""

    spec: RuleSpec
    tag: str  # full path
    tag_name: str
    unit: str
    machine: str  # ISA-95 machine path
    setpoint: str  # full path
    last_fired_ms: int | None = None
    run: int = 0  # consecutive anomalous windows (sustained_anomaly)
    last_window_end: int | None = None

    def cooling(self, now_ms: int) -> bool:
        """True while the rule's cooldown since it last fired runs (processing time)."""
        return (self.last_fired_ms is not None
                and now_ms - self.last_fired_ms < int(self.spec.cooldown_s * 1000))


def make_rule(catalog: Catalog, spec: RuleSpec) -> Rule:
    info = catalog.info(spec.tag)
    return Rule(
        spec=spec, tag=info.path, tag_name=info.spec.name, unit=info.spec.unit,
        machine=catalog.machine_path(catalog.info(spec.action.setpoint).machine),
        setpoint=catalog.resolve(spec.action.setpoint),
    )


def command_for(rule: Rule, reason: str, now_ms: int, cid: str) -> Command:
    """The rule's command ``cid`` (see :func:`command_id`), issued now: marks the rule
    fired (its cooldown starts)."""
    rule.last_fired_ms = now_ms
    logger.info("rule %s fired: %s", rule.spec.name, reason)
    return Command(
        command_id=cid, rule=rule.spec.name, machine=rule.machine,
        setpoint=rule.setpoint, value=float(rule.spec.action.value), reason=reason,
        issued_at=now_ms, expires_at=now_ms + COMMAND_TTL_MS,
    )


class RuleEngine:
    """Evaluates rules on closed windows (all of the catalog's, or ``specs``); counts
    ``fired`` and ``suppressed`` (cooldown)."""

    def __init__(self, catalog: Catalog, specs: Sequence[RuleSpec] | None = None) -> None:
        self._by_tag: dict[str, list[Rule]] = {}
        for spec in catalog.rules if specs is None else specs:
            rule = make_rule(catalog, spec)
            self._by_tag.setdefault(rule.tag, []).append(rule)
        self.fired = 0
        self.suppressed = 0

    def evaluate(self, agg: Aggregate, anomalies: Sequence[Anomaly], now_ms: int) -> list[Command]:
        out: list[Command] = []
        for rule in self._by_tag.get(agg.tag, ()):
            if rule.spec.on == "alarms" and rule.spec.kind == "sustained_anomaly":
                continue
            reason = (self._limit(rule, agg) if rule.spec.kind == "limit"
                      else self._sustained(rule, agg, anomalies))
            if reason is None:
                continue
            if rule.cooling(now_ms):
                self.suppressed += 1
                continue
            self.fired += 1
            out.append(command_for(rule, reason, now_ms,
                                   command_id(rule.spec.name, agg.tag, agg.window_start)))
        return out

    def on_alarms(self, alarms: Sequence[Alarm], now_ms: int) -> list[Command]:
        """``sustained_anomaly`` rules ``on: alarms``: an episode raised on the rule tag's
        machine that names the tag. The episode's start names the command, so a replay
        issues the same command id."""
        out: list[Command] = []
        for alarm in alarms:
            if alarm.action != "raised":
                continue
            for tag in alarm.tags:
                for rule in self._by_tag.get(tag, ()):
                    if rule.spec.on != "alarms" or rule.spec.kind != "sustained_anomaly":
                        continue
                    if rule.cooling(now_ms):
                        self.suppressed += 1
                        continue
                    self.fired += 1
                    reason = f"alarm {alarm.alarm_id} ({alarm.severity}): {alarm.message}"
                    out.append(command_for(rule, reason, now_ms,
                                           command_id(rule.spec.name, tag, alarm.started_at)))
        return out

    # -- persistence --------------------------------------------------------------------
    def _rules(self, tags: Iterable[str] | None) -> list[Rule]:
        if tags is None:
            return [r for rules in self._by_tag.values() for r in rules]
        return [r for t in tags for r in self._by_tag.get(t, ())]

    def snapshot(self, tags: Iterable[str] | None = None) -> dict[str, Any]:
        """What the rules of ``tags`` (or all) remember, as plain data, by rule name."""
        return {r.spec.name: [r.last_fired_ms, r.run, r.last_window_end]
                for r in self._rules(tags)}

    def restore(self, doc: dict[str, Any], *, replace: bool = True) -> None:
        """Take a :meth:`snapshot`. A rule no longer in the catalog is skipped; with
        ``replace`` the rules not in ``doc`` start afresh."""
        by_name = {r.spec.name: r for r in self._rules(None)}
        if replace:
            for r in by_name.values():
                r.last_fired_ms, r.run, r.last_window_end = None, 0, None
        for name, (fired, run, end) in doc.items():
            rule = by_name.get(name)
            if rule is None:
                logger.info("rule %s is no longer in the catalog: its saved state is "
                            "ignored", name)
                continue
            rule.last_fired_ms, rule.run, rule.last_window_end = fired, int(run), end

    def drop(self, tags: Iterable[str]) -> None:
        """Forget the rules' memory of these tags (their partition moved away)."""
        for r in self._rules(tags):
            r.last_fired_ms, r.run, r.last_window_end = None, 0, None

    @staticmethod
    def _limit(rule: Rule, agg: Aggregate) -> str | None:
        spec = rule.spec
        unit = f" {rule.unit}" if rule.unit else ""
        where = f"in window {_hms(agg.window_start)}"
        for bound, stat, op in ((spec.above, "max", ">"), (spec.below, "min", "<")):
            if bound is None:
                continue
            stat = stat if spec.statistic == "value" else spec.statistic  # value: extremes
            x = float(getattr(agg, stat))
            if x > bound if op == ">" else x < bound:
                return f"{stat} {rule.tag_name} {_num(x)}{unit} {op} {_num(bound)} {where}"
        return None

    @staticmethod
    def _sustained(rule: Rule, agg: Aggregate, anomalies: Sequence[Anomaly]) -> str | None:
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
