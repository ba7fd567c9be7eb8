"""A hydraulic press: pressure follows its setpoint through a stroke cycle."""

from __future__ import annotations

import math

import numpy as np

from connectors.simulator.faults import FaultKind
from connectors.simulator.physics.base import MachineModel, lag
from schemas.catalog import MachineSpec

__all__ = ["PressModel"]

STROKE_S = 6.0  # stroke period at nominal load
LEVEL_TAU_S = 1.0
OIL_TAU_S = 10.0
LOSS_FACTOR = 0.6  # a pressure_loss fault leaves 60 % of the pressure, with leak noise
REJECT_RATE = 0.01  # share of strokes whose part is rejected; low pressure spoils more
REJECT_RATE_LOSS = 0.2


class PressModel(MachineModel):
    model = "press"
    setpoint_defaults = {"pressure_sp": 200.0}

    def __init__(self, machine: MachineSpec, rng: np.random.Generator) -> None:
        super().__init__(machine, rng)
        self.level = self.sp("pressure_sp")
        self.oil = self._oil_eq(self.level, 1.0, False)
        self.phase = 0.0
        self.strokes = float(rng.integers(10000, 500000))
        self.rejects = float(math.floor(self.strokes * REJECT_RATE))

    @staticmethod
    def _oil_eq(level: float, load: float, overheat: bool) -> float:
        return 35.0 + 0.08 * level * load + (30.0 if overheat else 0.0)

    def _physics(self, dt: float, t: float) -> dict[str, float]:
        load = self.load(t)
        loss = self.fault(FaultKind.PRESSURE_LOSS) is not None
        overheat = self.fault(FaultKind.OVERHEAT) is not None
        target = self.sp("pressure_sp") * (LOSS_FACTOR if loss else 1.0)
        self.level = lag(self.level, target, LEVEL_TAU_S, dt)
        cycle = STROKE_S / load
        self.phase += dt / cycle
        if self.phase >= 1.0:
            self.phase -= math.floor(self.phase)
            self.strokes += 1.0
            self.rejects += REJECT_RATE_LOSS if loss else REJECT_RATE
        stroke = math.sin(2.0 * math.pi * self.phase)
        pressure = self.level * (0.965 + 0.035 * stroke)
        if loss:  # leaks: a noisy, dipping pressure
            pressure += self.noise(6.0) - abs(self.noise(8.0))
        self.oil = lag(self.oil, self._oil_eq(self.level, load, overheat), OIL_TAU_S, dt)
        vibration = 1.8 + 0.4 * max(0.0, stroke) + self.wear(t, per_minute=3.0)
        return {
            "hydraulic_pressure": max(0.0, pressure + self.noise(1.0)),
            "oil_temp": self.oil + self.noise(0.2),
            "motor_current": 20.0 + 0.3 * self.level * load + self.noise(0.8),
            "vibration_rms": max(0.0, vibration + self.noise(0.08)),
            "ram_position": 200.0 * (1.0 - math.cos(2.0 * math.pi * self.phase)),
            "cycle_time": cycle + self.noise(0.05),
            "stroke_count": self.strokes,
            "reject_count": float(math.floor(self.rejects)),
            "running": 1.0,
        }
