"""One quality characteristic's control chart: baseline, limits, run rules, capability.

Lifecycle: ``Chart(tag, spec, shift_of, min_points)``; :meth:`add` per reading (in source
time order: an older or equal timestamp than the last one is skipped, which also drops a
redelivered reading); :meth:`close_shifts` on a timer; :meth:`rebase` to learn new limits;
:meth:`to_dict`/:meth:`load` for checkpoints.

Phase I then II: the first ``baseline_points`` points (values, or subgroups of
``subgroup_size`` consecutive values) only build the baseline; then the limits freeze and
every later point is checked against them by the run rules. Capability is tallied per
shift from the first point on, independent of the limits, and published when a point of a
later shift arrives or the shift has been over for ``grace_ms`` of the worker's clock. A
point outside every shift of the calendar counts in no shift's capability.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.spc import CharacteristicSpec
from schemas.spc_events import SpcCapability, SpcViolation, spc_id
from streams.spc.capability import Shift, ShiftTally
from streams.spc.limits import Baseline, Limits
from streams.spc.rules import Rule, RuleChecker

__all__ = ["Chart", "ChartOutput"]

logger = logging.getLogger(__name__)


RANGE_RULE = "range-1"  # the range (or moving-range) chart's point above its UCL


@dataclass(slots=True)
class ChartOutput:
    violations: list[SpcViolation] = field(default_factory=list)
    capabilities: list[SpcCapability] = field(default_factory=list)

    def extend(self, other: ChartOutput) -> None:
        self.violations.extend(other.violations)
        self.capabilities.extend(other.capabilities)


class Chart:
    def __init__(self, tag: str, spec: CharacteristicSpec,
                 shift_of: Callable[[int], Shift | None], min_points: int) -> None:
        self.tag, self.spec, self.shift_of, self.min_points = tag, spec, shift_of, min_points
        self.n = spec.n
        self.baseline = Baseline(spec.chart, self.n, spec.baseline_points)
        self.limits: Limits | None = None
        self.rules = RuleChecker([r for r in spec.rules if r != "range"])
        self.range_rule = "range" in spec.rules  # range-1 on the R or MR chart
        self.last_ts: int | None = None
        self.prev: float | None = None  # last value (for the moving range)
        self.range_out = False  # the range chart is above its UCL (fired, not re-armed)
        self.group: list[float] = []  # the subgroup being filled (xbar_r)
        self.ts_history: list[int] = []  # ts of the last 15 points (a pattern's first_ts)
        self.tally: ShiftTally | None = None
        self.closed_through = 0  # capability of shifts ending at or before this is out
        self.skipped = 0  # readings older than the last one (or redelivered)

    # -- points ---------------------------------------------------------------------------
    def add(self, ts: int, value: float, now_ms: int) -> ChartOutput:
        out = ChartOutput()
        if self.last_ts is not None and ts <= self.last_ts:
            self.skipped += 1
            return out
        self.last_ts = ts
        if self.n == 1:
            self._point(ts, value, None, now_ms, out)
        else:
            self.group.append(value)
            if len(self.group) == self.n:
                mean, rng = sum(self.group) / self.n, max(self.group) - min(self.group)
                self.group = []
                self._point(ts, mean, rng, now_ms, out)
        return out

    def _point(self, ts: int, point: float, rng: float | None, now_ms: int,
               out: ChartOutput) -> None:
        self._capability(ts, point, rng, now_ms, out)
        if self.limits is None:
            spread = rng if self.n > 1 else (None if self.prev is None else abs(point - self.prev))
            self.prev = point
            self.baseline.add(point, spread)
            self.limits = self.baseline.limits()
            if self.limits is not None:
                logger.info("SPC %s: limits frozen from %d points (%d out-of-control "
                            "baseline points left out): centre %.6g, LCL %.6g, UCL %.6g",
                            self.tag, self.limits.points, self.limits.dropped,
                            self.limits.centre, self.limits.lcl, self.limits.ucl)
            return
        lim = self.limits
        self.ts_history = [*self.ts_history[-14:], ts]
        for rule, span in self.rules.add((point - lim.centre) / lim.sigma_point):
            out.violations.append(self._violation(rule, span, ts, point, now_ms))
        spread = rng if self.n > 1 else (None if self.prev is None else abs(point - self.prev))
        self.prev = point
        if spread is not None and self.range_rule:
            above = spread > lim.range_ucl
            if above and not self.range_out:  # once per excursion, like the run rules
                out.violations.append(self._range_violation(ts, spread, now_ms))
            self.range_out = above

    def _range_violation(self, ts: int, spread: float, now_ms: int) -> SpcViolation:
        """Rule 1 on the range chart (R, or MR for individuals): one point above its UCL,
        D4 x the baseline's mean range: the spread itself changed."""
        lim = self.limits
        assert lim is not None
        stat = "moving_range" if self.n == 1 else "range"
        desc = f"1 point above the {stat.replace('_', ' ')} chart's UCL"
        msg = (f"{RANGE_RULE}: {desc} on {self.tag} ({self.spec.chart} chart): {stat} "
               f"{spread:.6g} at {ts}; centre {lim.range_centre:.6g}, UCL {lim.range_ucl:.6g}")
        return SpcViolation(
            violation_id=spc_id(self.tag, RANGE_RULE, ts), tag=self.tag, rule=RANGE_RULE,
            rule_set="range", description=desc, message=msg, chart=self.spec.chart,
            statistic=stat, ts=ts, first_ts=ts, value=spread, points=1,
            centre=lim.range_centre, ucl=lim.range_ucl, lcl=lim.range_lcl,
            sigma=(lim.range_ucl - lim.range_centre) / 3.0, detected_at=now_ms)

    def _violation(self, rule: Rule, span: int, ts: int, point: float,
                   now_ms: int) -> SpcViolation:
        lim = self.limits
        assert lim is not None
        first = self.ts_history[-span]
        stat = "value" if self.n == 1 else "subgroup_mean"
        msg = (f"{rule.id}: {rule.description} on {self.tag} ({self.spec.chart} chart): "
               f"{stat} {point:.6g} at {ts}; centre {lim.centre:.6g}, LCL {lim.lcl:.6g}, "
               f"UCL {lim.ucl:.6g}")
        return SpcViolation(
            violation_id=spc_id(self.tag, rule.id, ts), tag=self.tag, rule=rule.id,
            rule_set=rule.rule_set, description=rule.description, message=msg,
            chart=self.spec.chart, statistic=stat, ts=ts, first_ts=first, value=point,
            points=span, centre=lim.centre, ucl=lim.ucl, lcl=lim.lcl, sigma=lim.sigma_point,
            detected_at=now_ms)

    # -- capability -----------------------------------------------------------------------
    def _capability(self, ts: int, point: float, rng: float | None, now_ms: int,
                    out: ChartOutput) -> None:
        if ts < self.closed_through:
            return  # its shift's capability is out already
        if self.tally is not None and ts >= self.tally.shift.end:
            out.capabilities.append(self._close(now_ms, complete=True))
        if self.tally is None:
            shift = self.shift_of(ts)
            if shift is None:
                return  # outside every shift
            self.tally = ShiftTally(shift, self.n)
        if rng is None:
            self.tally.add_value(point)
        else:
            self.tally.add_subgroup(point, rng)

    def _close(self, now_ms: int, *, complete: bool) -> SpcCapability:
        t = self.tally
        assert t is not None
        self.tally = None
        if complete:
            self.closed_through = t.shift.end
        r = t.result(self.spec.lsl, self.spec.usl, self.min_points)
        return SpcCapability(
            capability_id=spc_id(self.tag, t.shift.start), tag=self.tag, shift=t.shift.name,
            shift_start=t.shift.start, shift_end=t.shift.end, complete=complete,
            chart=self.spec.chart, points=r.points, mean=r.mean, sigma_within=r.sigma_within,
            sigma_method=t.sigma_method, lsl=self.spec.lsl, usl=self.spec.usl, cp=r.cp,
            cpk=r.cpk, cpu=r.cpu, cpl=r.cpl, note=r.note, computed_at=now_ms)

    def close_shifts(self, now_ms: int, grace_ms: int) -> list[SpcCapability]:
        """The open shift's capability if it ended ``grace_ms`` ago by the worker's clock
        (a tag that went quiet still gets its shift's figures)."""
        if self.tally is not None and self.tally.shift.end + grace_ms <= now_ms:
            return [self._close(now_ms, complete=True)]
        return []

    def flush(self, now_ms: int) -> list[SpcCapability]:
        """The open shift so far (``complete`` false), at the end of a run. It stays open:
        a later point of the same shift still counts in it."""
        if self.tally is None:
            return []
        tally = self.tally
        cap = self._close(now_ms, complete=False)
        self.tally = tally
        return [cap]

    def rebase(self) -> None:
        """Forget the limits and learn new ones from the next ``baseline_points`` points
        (after a deliberate process change: a new tool, material or setpoint)."""
        self.baseline = Baseline(self.spec.chart, self.n, self.spec.baseline_points)
        self.limits, self.prev, self.group, self.ts_history = None, None, [], []
        self.range_out = False
        self.rules.reset()

    # -- state ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_dict(),
                "limits": None if self.limits is None else self.limits.to_dict(),
                "rules": self.rules.to_dict(), "last_ts": self.last_ts, "prev": self.prev,
                "group": self.group, "ts_history": self.ts_history,
                "tally": None if self.tally is None else self.tally.to_dict(),
                "closed_through": self.closed_through, "range_out": self.range_out}

    def load(self, doc: dict[str, Any]) -> None:
        self.baseline.load(doc["baseline"])
        self.limits = None if doc["limits"] is None else Limits.from_dict(doc["limits"])
        self.rules.load(doc["rules"])
        self.last_ts = doc["last_ts"]
        self.prev = doc["prev"]
        self.group = [float(v) for v in doc["group"]]
        self.ts_history = [int(t) for t in doc["ts_history"]]
        self.tally = None if doc["tally"] is None else ShiftTally.from_dict(doc["tally"], self.n)
        self.closed_through = int(doc["closed_through"])
        self.range_out = bool(doc.get("range_out", False))  # absent in older checkpoints
