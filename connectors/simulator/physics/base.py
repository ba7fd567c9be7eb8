"""What every machine model shares: setpoints, seeded noise, the shift pattern, faults.

A model is a plain object: construct it with the machine's catalog entry and a seeded
NumPy Generator, set setpoints and active faults, then call ``step(dt, t)`` once per tick
to get every tag's value by tag name. No clocks, no I/O: the same seed and the same
sequence of calls give the same values.
"""

from __future__ import annotations

import math

import numpy as np

from connectors.simulator.faults import Fault, FaultKind
from schemas.catalog import MachineSpec

__all__ = ["SHIFT_PERIOD_S", "MachineModel", "lag"]

SHIFT_PERIOD_S = 480.0  # one simulated shift: the load goes through a full cycle in 8 min


def lag(x: float, target: float, tau: float, dt: float) -> float:
    """One step of a first-order lag with time constant ``tau`` seconds."""
    return x + (target - x) * (1.0 - math.exp(-dt / tau))


class MachineModel:
    """Base of the machine models; subclasses implement :meth:`_physics`.

    Lifecycle: ``m = Model(spec, rng)``; ``m.set_setpoint(name, v)`` and
    ``m.set_faults(faults)`` any time; ``m.step(dt, t)`` once per tick.
    """

    model = ""
    # setpoint defaults when the catalog gives none
    setpoint_defaults: dict[str, float] = {}

    def __init__(self, machine: MachineSpec, rng: np.random.Generator) -> None:
        self.machine = machine
        self.rng = rng
        self.setpoints: dict[str, float] = dict(self.setpoint_defaults)
        self._limits: dict[str, tuple[float, float]] = {}
        for t in machine.tags:
            if t.kind == "setpoint":
                lo = t.min if t.min is not None else -math.inf
                hi = t.max if t.max is not None else math.inf
                self._limits[t.name] = (lo, hi)
                if t.default is not None:
                    self.setpoints[t.name] = t.default
        self.faults: list[Fault] = []
        self._shift_phase = float(rng.uniform(0.0, 2.0 * math.pi))
        self._last: dict[str, float] = {}

    # -- inputs ---------------------------------------------------------------------------
    def set_setpoint(self, name: str, value: float) -> None:
        """Set a setpoint; the machine honours it within the tag's [min, max]."""
        if not math.isfinite(value):
            return
        lo, hi = self._limits.get(name, (-math.inf, math.inf))
        self.setpoints[name] = min(max(float(value), lo), hi)

    def set_faults(self, faults: list[Fault]) -> None:
        """The faults active on this machine now."""
        self.faults = [f for f in faults if f.machine == self.machine.name]

    # -- helpers for subclasses ---------------------------------------------------------------
    def sp(self, name: str) -> float:
        return self.setpoints[name]

    def fault(self, kind: FaultKind) -> Fault | None:
        for f in self.faults:
            if f.kind is kind:
                return f
        return None

    def wear(self, t: float, per_minute: float) -> float:
        """Extra vibration from bearing wear: grows ``per_minute`` mm/s per minute of fault."""
        f = self.fault(FaultKind.BEARING_WEAR)
        return 0.0 if f is None else per_minute * max(0.0, t - f.start_s) / 60.0

    def load(self, t: float) -> float:
        """Production load, 0.85..1.15, one cycle per simulated shift."""
        return 1.0 + 0.15 * math.sin(2.0 * math.pi * t / SHIFT_PERIOD_S + self._shift_phase)

    def noise(self, sigma: float) -> float:
        return float(self.rng.normal(0.0, sigma))

    # -- the tick ---------------------------------------------------------------------------
    def _physics(self, dt: float, t: float) -> dict[str, float]:
        raise NotImplementedError

    def step(self, dt: float, t: float) -> dict[str, float]:
        """Advance by ``dt`` seconds to simulated time ``t``; every catalog tag's value."""
        out = self._physics(dt, t)
        out.update(self.setpoints)
        out["fault"] = 1.0 if self.faults else 0.0
        for f in self.faults:
            if f.kind is FaultKind.STUCK_SENSOR and f.tag in self._last:
                out[f.tag] = self._last[f.tag]
        values = {tag.name: float(out.get(tag.name, 0.0)) for tag in self.machine.tags}
        self._last = values
        return values
