"""Western Electric and Nelson run rules on a chart's points, in units of sigma.

Each point is given as ``z = (point - centre) / sigma_point``. A rule looks at the last
few points (the window ending at the newest one); it is *violated at* a point when its
pattern holds over that window.

One violation per run: a rule fires at the first point where it is violated, and not again
while it stays violated at each following point (nine points on one side of the centre
line are one event, not one per point after the eighth). It re-arms at the first point
where it no longer holds. Rules only see the points after the limits were frozen.

Western Electric (Western Electric Statistical Quality Control Handbook, 1956):
  1 one point beyond 3 sigma; 2 two of three beyond 2 sigma on the same side; 3 four of five
  beyond 1 sigma on the same side; 4 eight in a row on the same side.
Nelson (Journal of Quality Technology 16(4), 1984):
  1 one point beyond 3 sigma; 2 nine in a row on the same side; 3 six in a row steadily
  increasing or decreasing; 4 fourteen in a row alternating up and down; 5 two of three
  beyond 2 sigma on the same side; 6 four of five beyond 1 sigma on the same side;
  7 fifteen in a row within 1 sigma, either side; 8 eight in a row beyond 1 sigma, on both
  sides.
A point exactly on the centre line is on neither side; equal neighbours are neither up
nor down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

__all__ = ["RULES", "RULE_SETS", "Rule", "RuleChecker"]

Z = Sequence[float]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # e.g. "nelson-3"
    rule_set: str  # "western_electric" or "nelson"
    window: int  # how many points it looks at
    description: str
    test: Callable[[Z], bool]  # the pattern over exactly ``window`` points


def _beyond(k: float, of: int, limit: float) -> Callable[[Z], bool]:
    """``k`` of the ``of`` points beyond ``limit`` sigma, all on one side."""
    def test(z: Z) -> bool:
        return (sum(1 for v in z if v > limit) >= k) or (sum(1 for v in z if v < -limit) >= k)
    return test


def _one_side(z: Z) -> bool:
    return all(v > 0 for v in z) or all(v < 0 for v in z)


def _steady(z: Z) -> bool:
    steps = [b - a for a, b in pairwise(z)]
    return all(s > 0 for s in steps) or all(s < 0 for s in steps)


def _alternating(z: Z) -> bool:
    steps = [b - a for a, b in pairwise(z)]
    return all(s != 0 for s in steps) and all(
        a * b < 0 for a, b in pairwise(steps))


def _hugging(z: Z) -> bool:
    return all(abs(v) < 1.0 for v in z)


def _mixture(z: Z) -> bool:
    return all(abs(v) > 1.0 for v in z) and any(v > 0 for v in z) and any(v < 0 for v in z)


_WE = "western_electric"
_N = "nelson"
RULES: tuple[Rule, ...] = (
    Rule("western_electric-1", _WE, 1, "1 point beyond 3 sigma", _beyond(1, 1, 3.0)),
    Rule("western_electric-2", _WE, 3, "2 of 3 points beyond 2 sigma on the same side",
         _beyond(2, 3, 2.0)),
    Rule("western_electric-3", _WE, 5, "4 of 5 points beyond 1 sigma on the same side",
         _beyond(4, 5, 1.0)),
    Rule("western_electric-4", _WE, 8, "8 points in a row on the same side of the centre line",
         _one_side),
    Rule("nelson-1", _N, 1, "1 point beyond 3 sigma", _beyond(1, 1, 3.0)),
    Rule("nelson-2", _N, 9, "9 points in a row on the same side of the centre line",
         _one_side),
    Rule("nelson-3", _N, 6, "6 points in a row steadily increasing or decreasing", _steady),
    Rule("nelson-4", _N, 14, "14 points in a row alternating up and down", _alternating),
    Rule("nelson-5", _N, 3, "2 of 3 points beyond 2 sigma on the same side",
         _beyond(2, 3, 2.0)),
    Rule("nelson-6", _N, 5, "4 of 5 points beyond 1 sigma on the same side",
         _beyond(4, 5, 1.0)),
    Rule("nelson-7", _N, 15, "15 points in a row within 1 sigma of the centre line",
         _hugging),
    Rule("nelson-8", _N, 8, "8 points in a row beyond 1 sigma, on both sides of the centre line",
         _mixture),
)
RULE_SETS: tuple[str, ...] = (_WE, _N)
_LONGEST = max(r.window for r in RULES)


class RuleChecker:
    """The rules of the chosen sets over the latest points. Lifecycle: construct with the
    sets; :meth:`add` per point (its z), which returns the rules that fire at it;
    :meth:`reset` when the limits change. State: the last 15 z values and the rules
    violated at the previous point (plain data: :meth:`to_dict`/:meth:`load`)."""

    __slots__ = ("active", "history", "rules")

    def __init__(self, rule_sets: Iterable[str]) -> None:
        chosen = set(rule_sets)
        unknown = chosen - set(RULE_SETS)
        if unknown:
            raise ValueError(f"rule sets {sorted(unknown)} are not known; use "
                             f"{', '.join(RULE_SETS)}")
        self.rules = [r for r in RULES if r.rule_set in chosen]
        self.history: deque[float] = deque(maxlen=_LONGEST)
        self.active: set[str] = set()

    def add(self, z: float) -> list[tuple[Rule, int]]:
        """Take the next point; each rule that fires now, with how many points its
        pattern spans (its window)."""
        self.history.append(z)
        have = len(self.history)
        fired: list[tuple[Rule, int]] = []
        recent = list(self.history)
        for rule in self.rules:
            holds = have >= rule.window and rule.test(recent[have - rule.window:])
            if holds and rule.id not in self.active:
                self.active.add(rule.id)
                fired.append((rule, rule.window))
            elif not holds:
                self.active.discard(rule.id)
        return fired

    def reset(self) -> None:
        self.history.clear()
        self.active.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "active": sorted(self.active)}

    def load(self, doc: dict[str, Any]) -> None:
        self.history = deque((float(v) for v in doc["history"]), maxlen=_LONGEST)
        self.active = set(doc["active"])
