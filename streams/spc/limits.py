"""Control limits from a baseline period: individuals (I-MR) and X-bar-R charts.

Individuals: centre = mean of the baseline values, sigma = MRbar / d2 (d2 = 1.128 for a
moving range of two), limits centre +- 3 sigma; the moving-range chart's UCL is
D4 * MRbar = 3.267 MRbar, its LCL 0. X-bar-R with subgroups of n: centre = mean of the
subgroup means, limits centre +- A2 * Rbar, sigma (of a single value) = Rbar / d2(n); the
range chart's limits are D3 * Rbar and D4 * Rbar.

A :class:`Baseline` keeps running sums only (a few numbers, whatever its length) and gives
:class:`Limits` once it holds its ``points``; with no spread at all (every value equal)
there are no limits to give, and it keeps collecting until the values vary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.spc.constants import constants

__all__ = ["Baseline", "Limits", "individuals_limits", "xbar_r_limits"]

INDIVIDUALS = "individuals"
XBAR_R = "xbar_r"


@dataclass(frozen=True, slots=True)
class Limits:
    """The frozen limits of one chart. ``n`` is the subgroup size (1 for individuals);
    ``range_centre`` is MRbar or Rbar; ``sigma`` is the process sigma within."""

    chart: str
    n: int
    centre: float
    sigma: float
    range_centre: float
    points: int  # baseline values (individuals) or subgroups (X-bar-R)

    @property
    def sigma_point(self) -> float:
        """The sigma of one plotted point: sigma for an individual, A2 * Rbar / 3 for a
        subgroup mean (the table's A2, so the limits are the textbook's)."""
        if self.n == 1:
            return self.sigma
        return constants(self.n).a2 * self.range_centre / 3.0

    @property
    def ucl(self) -> float:
        return self.centre + 3.0 * self.sigma_point

    @property
    def lcl(self) -> float:
        return self.centre - 3.0 * self.sigma_point

    @property
    def range_ucl(self) -> float:
        return constants(max(self.n, 2)).d4 * self.range_centre

    @property
    def range_lcl(self) -> float:
        return constants(max(self.n, 2)).d3 * self.range_centre

    def to_dict(self) -> dict[str, Any]:
        return {"chart": self.chart, "n": self.n, "centre": self.centre, "sigma": self.sigma,
                "range_centre": self.range_centre, "points": self.points}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Limits:
        return cls(str(doc["chart"]), int(doc["n"]), float(doc["centre"]),
                   float(doc["sigma"]), float(doc["range_centre"]), int(doc["points"]))


def individuals_limits(values: Sequence[float]) -> Limits | None:
    """I-MR limits of ``values`` (at least two); None when they do not vary."""
    b = Baseline(INDIVIDUALS, 1, len(values))
    prev: float | None = None
    for v in values:
        b.add(v, None if prev is None else abs(v - prev))
        prev = v
    return b.limits()


def xbar_r_limits(subgroups: Sequence[Sequence[float]]) -> Limits | None:
    """X-bar-R limits of equal-sized ``subgroups``; None when no subgroup has a range."""
    n = len(subgroups[0]) if subgroups else 0
    constants(n)
    b = Baseline(XBAR_R, n, len(subgroups))
    for g in subgroups:
        if len(g) != n:
            raise ValueError(f"subgroup {list(g)} has {len(g)} values; every subgroup of an "
                             f"X-bar-R chart needs {n}")
        b.add(sum(g) / n, max(g) - min(g))
    return b.limits()


class Baseline:
    """Running sums of a baseline period. ``add(point, spread)``: for individuals the value
    and its moving range (None for the first value), for X-bar-R the subgroup's mean and
    range. :meth:`limits` once ``points`` were added and the spread is not zero."""

    __slots__ = ("chart", "count", "n", "points", "spread_count", "spread_sum", "total")

    def __init__(self, chart: str, n: int, points: int) -> None:
        self.chart, self.n, self.points = chart, n, points
        self.count = 0
        self.total = 0.0
        self.spread_sum = 0.0
        self.spread_count = 0

    def add(self, point: float, spread: float | None) -> None:
        self.count += 1
        self.total += point
        if spread is not None:
            self.spread_sum += spread
            self.spread_count += 1

    @property
    def full(self) -> bool:
        return self.count >= self.points

    def limits(self) -> Limits | None:
        """The limits, or None: fewer than ``points`` yet, or no spread (every value
        equal: no sigma to put limits at)."""
        if not self.full or self.spread_count == 0:
            return None
        rbar = self.spread_sum / self.spread_count
        centre = self.total / self.count
        if not (rbar > 0 and math.isfinite(rbar) and math.isfinite(centre)):
            return None
        sigma = rbar / constants(max(self.n, 2)).d2
        return Limits(self.chart, self.n, centre, sigma, rbar, self.count)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "spread_sum": self.spread_sum,
                "spread_count": self.spread_count}

    def load(self, doc: dict[str, Any]) -> None:
        self.count = int(doc["count"])
        self.total = float(doc["total"])
        self.spread_sum = float(doc["spread_sum"])
        self.spread_count = int(doc["spread_count"])
