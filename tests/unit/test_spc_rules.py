"""Western Electric and Nelson rules on crafted points: each sequence trips its rule and
none of the other rules of its set; a rule that stays violated fires once per run."""

from __future__ import annotations

import pytest

from streams.spc.rules import RULES, RuleChecker

# A quiet background in sigma units: no rule of either set holds anywhere in it, however
# often it repeats (runs of at most 2 on one side, 2 steps one way, |z| < 2, a point
# beyond 1 sigma at least every 4 points, never 4 of 5 beyond 1 sigma on one side).
QUIET = [0.5, -0.5, 1.5, 0.2, -1.5, -0.3, 0.8]


def fired(z: list[float], rule_set: str) -> list[tuple[str, int]]:
    """(rule id, index of the point it fired at) for every firing."""
    checker = RuleChecker([rule_set])
    out = []
    for i, v in enumerate(z):
        out += [(rule.id, i) for rule, _ in checker.add(v)]
    return out


def around(segment: list[float]) -> tuple[list[float], int]:
    """The segment between three repeats of the quiet pattern before and two after; the
    index where the segment starts."""
    before = QUIET * 3
    return before + segment + QUIET * 2, len(before)


def test_the_quiet_background_trips_nothing() -> None:
    for rule_set in ("western_electric", "nelson"):
        assert fired(QUIET * 10, rule_set) == []


NELSON = {
    "nelson-1": [3.5],
    "nelson-2": [0.5, 0.2, 0.6, 0.3, 0.7, 0.2, 0.5, 0.4, 0.6],
    "nelson-3": [-0.8, -0.5, -0.2, 0.1, 0.4, 0.7],
    "nelson-4": [0.5, -1.2, 0.6, -0.4, 1.3, -0.5, 0.4, -1.3, 0.5, -0.6, 1.2, -0.4, 0.6, -1.2],
    "nelson-5": [2.5, 0.3, 2.4],
    "nelson-6": [1.5, 1.2, 0.3, 1.4, 1.6],
    "nelson-7": [0.5, -0.5, 0.3, 0.6, -0.2, -0.7, 0.4, 0.2, -0.6, 0.3, 0.5, -0.4, -0.3, 0.6,
                 0.2],
    "nelson-8": [1.5, -1.5, 1.2, -1.2, -1.5, 1.5, 1.2, -1.2],
}
WESTERN = {
    "western_electric-1": [3.5],
    "western_electric-2": [2.5, 0.3, 2.4],
    "western_electric-3": [1.5, 1.2, 0.3, 1.4, 1.6],
    "western_electric-4": [0.5, 0.2, 0.6, 0.3, 0.7, 0.2, 0.5, 0.4],
}


@pytest.mark.parametrize(("rule_set", "rule", "segment"),
                         [("nelson", r, s) for r, s in NELSON.items()]
                         + [("western_electric", r, s) for r, s in WESTERN.items()])
def test_each_rule_trips_alone(rule_set: str, rule: str, segment: list[float]) -> None:
    z, start = around(segment)
    got = fired(z, rule_set)
    assert [r for r, _ in got] == [rule], got
    # it fires at a point of the segment (the quiet points around may complete a pattern
    # a little early, as for nelson-7, whose neighbours are within 1 sigma too)
    assert start <= got[0][1] < start + len(segment)


def test_every_rule_is_covered() -> None:
    assert set(NELSON) | set(WESTERN) == {r.id for r in RULES}


def test_a_rule_that_stays_violated_fires_once_per_run() -> None:
    # 30 points above the centre line: one run, one violation; then a point below re-arms
    # it and another 8 above are a second run
    z = [0.4, 0.6] * 15 + [-0.5] + [0.5] * 8
    got = fired(z, "western_electric")
    assert got == [("western_electric-4", 7), ("western_electric-4", 38)]


def test_points_beyond_three_sigma_in_a_row_are_one_run() -> None:
    got = fired([0.1, 3.2, 3.5, 3.1, 0.2, -3.3], "nelson")
    ids = [(r, i) for r, i in got if r == "nelson-1"]
    assert ids == [("nelson-1", 1), ("nelson-1", 5)]


def test_a_point_on_the_centre_line_is_on_neither_side() -> None:
    z = [0.5] * 4 + [0.0] + [0.5] * 4
    assert fired(z, "western_electric") == []


def test_unknown_rule_set_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'shewhart'.*western_electric, nelson"):
        RuleChecker(["shewhart"])
