"""Control limits from a baseline period: individuals (I-MR) and X-bar-R charts.

Individuals: centre = mean of the baseline values, sigma = MRbar / d2 (d2 = 1.128 for a
moving range of two), limits centre +- 3 sigma; the moving-range chart's UCL is
D4 * MRbar = 3.267 MRbar, its LCL 0. X-bar-R with subgroups of n: centre = mean of the
subgroup means, limits centre +- A2 * Rbar, sigma (of a single value) = Rbar / d2(n); the
range chart's limits are D3 * Rbar and D4 * Rbar.

A :class:`Baseline` keeps its points (and their ranges) and gives :class:`Limits` once it
holds ``points`` of them, the Phase I way: trial limits from all of them, then the points
out of control against those (beyond the 3-sigma limits, or a range above the range
chart's UCL) are dropped and the limits computed again, up to ``PASSES`` times and never
below half the points; the limits say how many were dropped. With no spread at all (every
value equal) there are no limits to give, and it keeps collecting until the values vary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.spc.constants import constants

__all__ = ["PASSES", "Baseline", "Limits", "individuals_limits", "xbar_r_limits"]

logger = logging.getLogger(__name__)

PASSES = 5  # trial limits, drop the out-of-control baseline points, again: at most this

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
    points: int  # baseline values (individuals) or subgroups (X-bar-R) the limits are from
    dropped: int = 0  # baseline points left out: out of control against trial limits

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
                "range_centre": self.range_centre, "points": self.points,
                "dropped": self.dropped}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Limits:
        return cls(str(doc["chart"]), int(doc["n"]), float(doc["centre"]),
                   float(doc["sigma"]), float(doc["range_centre"]), int(doc["points"]),
                   int(doc.get("dropped", 0)))


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
    """The points of a baseline period. ``add(point, spread)``: for individuals the value
    and its moving range (None for the first value), for X-bar-R the subgroup's mean and
    range. :meth:`limits` once ``points`` were added and the spread is not zero."""

    __slots__ = ("chart", "n", "points", "values")

    def __init__(self, chart: str, n: int, points: int) -> None:
        self.chart, self.n, self.points = chart, n, points
        self.values: list[tuple[float, float | None]] = []

    @property
    def count(self) -> int:
        return len(self.values)

    def add(self, point: float, spread: float | None) -> None:
        self.values.append((point, spread))

    @property
    def full(self) -> bool:
        return self.count >= self.points

    def limits(self) -> Limits | None:
        """The limits, or None: fewer than ``points`` yet, or no spread (every value
        equal: no sigma to put limits at)."""
        if not self.full:
            return None
        kept = list(self.values)
        lim = self._trial(kept)
        for _ in range(PASSES):
            if lim is None:
                return None
            out = {i for i, (p, _) in enumerate(kept) if not lim.lcl <= p <= lim.ucl}
            # a range above its UCL drops its point, unless an individual's moving range
            # is high only because the point before it is out already
            out |= {i for i, (_, r) in enumerate(kept) if r is not None and r > lim.range_ucl
                    and not (self.n == 1 and i - 1 in out)}
            if not out or len(kept) - len(out) < max(2, self.points // 2):
                break
            nxt: list[tuple[float, float | None]] = []
            for i, (p, r) in enumerate(kept):
                if i in out:
                    continue
                # a moving range spans the point before it: gone with that point
                follows_dropped = self.n == 1 and i - 1 in out
                nxt.append((p, None if follows_dropped else r))
            kept = nxt
            lim = self._trial(kept)
        if lim is None:
            return None
        return Limits(lim.chart, lim.n, lim.centre, lim.sigma, lim.range_centre, len(kept),
                      self.count - len(kept))

    def _trial(self, values: list[tuple[float, float | None]]) -> Limits | None:
        spreads = [r for _, r in values if r is not None]
        if not spreads:
            return None
        rbar = sum(spreads) / len(spreads)
        centre = sum(p for p, _ in values) / len(values)
        if not (rbar > 0 and math.isfinite(rbar) and math.isfinite(centre)):
            return None
        sigma = rbar / constants(max(self.n, 2)).d2
        return Limits(self.chart, self.n, centre, sigma, rbar, len(values))

    def to_dict(self) -> dict[str, Any]:
        return {"values": [list(v) for v in self.values]}

    def load(self, doc: dict[str, Any]) -> None:
        if "values" not in doc:  # saved as running sums, before the points were kept
            logger.info("SPC: a baseline saved without its points (%s of them) starts "
                        "again", doc.get("count"))
            self.values = []
            return
        self.values = [(float(p), None if r is None else float(r)) for p, r in doc["values"]]
