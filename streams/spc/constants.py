"""Control chart constants for subgroups of size 2 to 10 (ASTM STP 15D, Montgomery
"Introduction to Statistical Quality Control", appendix table VI).

``d2`` is the expected range of n independent standard normal values: sigma = Rbar / d2.
``A2`` puts the X-bar limits at grand mean +- A2 * Rbar (= 3 / (d2 * sqrt(n))). ``D3`` and
``D4`` put the range chart's limits at D3 * Rbar and D4 * Rbar. An individuals chart uses the
moving range of two points, so n = 2: sigma = MRbar / 1.128, MR chart UCL = 3.267 * MRbar.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_SUBGROUP", "MIN_SUBGROUP", "ChartConstants", "constants"]

MIN_SUBGROUP = 2
MAX_SUBGROUP = 10


@dataclass(frozen=True, slots=True)
class ChartConstants:
    n: int
    d2: float
    a2: float
    d3: float
    d4: float


# n: (d2, A2, D3, D4)
_TABLE: dict[int, tuple[float, float, float, float]] = {
    2: (1.128, 1.880, 0.000, 3.267),
    3: (1.693, 1.023, 0.000, 2.574),
    4: (2.059, 0.729, 0.000, 2.282),
    5: (2.326, 0.577, 0.000, 2.114),
    6: (2.534, 0.483, 0.000, 2.004),
    7: (2.704, 0.419, 0.076, 1.924),
    8: (2.847, 0.373, 0.136, 1.864),
    9: (2.970, 0.337, 0.184, 1.816),
    10: (3.078, 0.308, 0.223, 1.777),
}


def constants(n: int) -> ChartConstants:
    """The constants for subgroups of ``n``; ValueError naming n and the range otherwise."""
    row = _TABLE.get(n)
    if row is None:
        raise ValueError(f"subgroup size {n} has no control chart constants here; use "
                         f"{MIN_SUBGROUP} to {MAX_SUBGROUP}")
    return ChartConstants(n, *row)
