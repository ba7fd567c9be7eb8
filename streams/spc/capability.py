"""Process capability per shift: Cp and Cpk against the catalog's specification limits.

Cp = (USL - LSL) / 6 sigma; Cpk = min(USL - mean, mean - LSL) / 3 sigma, with sigma the
sigma *within* from the shift's own chart data: MRbar / d2 (individuals, d2 = 1.128) or
Rbar / d2(n) (X-bar-R). With one limit only, Cp is undefined and Cpk is the one-sided
index (Cpu or Cpl); the record says so in ``note`` rather than inventing a number. A shift
with fewer than ``min_points`` points (values, or subgroups) reports that instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.spc.constants import constants

__all__ = ["Capability", "Shift", "ShiftTally", "capability"]


@dataclass(frozen=True, slots=True)
class Shift:
    """One occurrence of a shift of the catalog's calendar: [start, end) in Unix ms."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Capability:
    points: int
    mean: float | None
    sigma_within: float | None
    cp: float | None
    cpk: float | None
    cpu: float | None
    cpl: float | None
    note: str  # why an index is missing or one-sided; "" when Cp and Cpk are both given


def capability(points: int, mean: float | None, sigma: float | None, lsl: float | None,
               usl: float | None, min_points: int) -> Capability:
    """The indices for ``points`` with ``mean`` and sigma within ``sigma``."""
    def none(note: str) -> Capability:
        return Capability(points, mean, sigma, None, None, None, None, note)

    if points < min_points or mean is None:
        return none(f"too few points: {points} in the shift, Cp/Cpk need at least "
                    f"{min_points}")
    if lsl is None and usl is None:
        return none("no specification limits (lsl, usl) in the catalog: Cp/Cpk undefined")
    if sigma is None or not sigma > 0:
        return none("sigma within is 0 (no variation between consecutive points): "
                    "Cp/Cpk undefined")
    cpu = None if usl is None else (usl - mean) / (3 * sigma)
    cpl = None if lsl is None else (mean - lsl) / (3 * sigma)
    if usl is not None and lsl is not None:
        assert cpu is not None and cpl is not None
        return Capability(points, mean, sigma, (usl - lsl) / (6 * sigma), min(cpu, cpl),
                          cpu, cpl, "")
    if usl is not None:
        return Capability(points, mean, sigma, None, cpu, cpu, None,
                          "one-sided: only USL given, Cp undefined, Cpk = Cpu")
    return Capability(points, mean, sigma, None, cpl, None, cpl,
                      "one-sided: only LSL given, Cp undefined, Cpk = Cpl")


class ShiftTally:
    """Running sums of one shift's points. Individuals: :meth:`add_value` per value (the
    moving range is taken between consecutive values of the shift); X-bar-R:
    :meth:`add_subgroup` per subgroup mean and range."""

    __slots__ = ("count", "n", "prev", "shift", "spread_count", "spread_sum", "total")

    def __init__(self, shift: Shift, n: int) -> None:
        self.shift, self.n = shift, n
        self.count = 0
        self.total = 0.0
        self.spread_sum = 0.0
        self.spread_count = 0
        self.prev: float | None = None

    def add_value(self, v: float) -> None:
        if self.prev is not None:
            self.spread_sum += abs(v - self.prev)
            self.spread_count += 1
        self.prev = v
        self.count += 1
        self.total += v

    def add_subgroup(self, mean: float, rng: float) -> None:
        self.count += 1
        self.total += mean
        self.spread_sum += rng
        self.spread_count += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def sigma_within(self) -> float | None:
        if not self.spread_count:
            return None
        return self.spread_sum / self.spread_count / constants(max(self.n, 2)).d2

    @property
    def sigma_method(self) -> str:
        return "MRbar/d2 (d2=1.128)" if self.n == 1 else \
            f"Rbar/d2 (n={self.n}, d2={constants(self.n).d2})"

    def result(self, lsl: float | None, usl: float | None, min_points: int) -> Capability:
        return capability(self.count, self.mean, self.sigma_within, lsl, usl, min_points)

    def to_dict(self) -> dict[str, Any]:
        return {"shift": [self.shift.name, self.shift.start, self.shift.end],
                "count": self.count, "total": self.total, "spread_sum": self.spread_sum,
                "spread_count": self.spread_count, "prev": self.prev}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], n: int) -> ShiftTally:
        name, start, end = doc["shift"]
        t = cls(Shift(str(name), int(start), int(end)), n)
        t.count, t.total = int(doc["count"]), float(doc["total"])
        t.spread_sum, t.spread_count = float(doc["spread_sum"]), int(doc["spread_count"])
        t.prev = None if doc["prev"] is None else float(doc["prev"])
        return t
