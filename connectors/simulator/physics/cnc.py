"""A CNC machining centre: the spindle follows its speed setpoint and heats with speed."""

from __future__ import annotations

import math

import numpy as np

from connectors.simulator.faults import FaultKind
from connectors.simulator.physics.base import MachineModel, lag
from schemas.catalog import MachineSpec

__all__ = ["CncModel"]

AMBIENT_C = 25.0
HEAT_C_PER_RPM = 4.2e-3  # spindle temperature rise per rpm at equilibrium (~59 °C at 8000)
OVERHEAT_GAIN = 2.5  # an overheat fault multiplies the heat: ~109 °C at 8000, ~78 at 5000
SPEED_TAU_S = 2.0
TEMP_TAU_S = 4.0
REJECT_RATE = 0.02  # share of parts rejected at inspection; an overheat spoils many more
REJECT_RATE_OVERHEAT = 0.25


class CncModel(MachineModel):
    model = "cnc"
    setpoint_defaults = {"spindle_speed_sp": 8000.0}

    def __init__(self, machine: MachineSpec, rng: np.random.Generator) -> None:
        super().__init__(machine, rng)
        self.speed = self.sp("spindle_speed_sp")
        self.temp = self._temp_eq(self.speed, 1.0, False)
        self.parts = float(rng.integers(1000, 20000))
        self.rejects = float(math.floor(self.parts * REJECT_RATE))

    @staticmethod
    def _temp_eq(speed: float, load: float, overheat: bool) -> float:
        heat = HEAT_C_PER_RPM * speed * (0.9 + 0.1 * load)
        return AMBIENT_C + heat * (OVERHEAT_GAIN if overheat else 1.0)

    def _physics(self, dt: float, t: float) -> dict[str, float]:
        load = self.load(t)
        overheat = self.fault(FaultKind.OVERHEAT) is not None
        self.speed = lag(self.speed, self.sp("spindle_speed_sp"), SPEED_TAU_S, dt)
        self.temp = lag(self.temp, self._temp_eq(self.speed, load, overheat), TEMP_TAU_S, dt)
        running = self.speed > 100.0
        cycle = min(max(288000.0 / max(self.speed, 1.0), 20.0), 60.0)  # 36 s at 8000 rpm
        if running:
            made = dt / cycle
            self.parts += made
            self.rejects += made * (REJECT_RATE_OVERHEAT if overheat else REJECT_RATE)
        vibration = 1.2 + 1.0e-4 * self.speed + self.wear(t, per_minute=3.0)
        return {
            "spindle_speed": self.speed + self.noise(5.0),
            "spindle_temp": self.temp + self.noise(0.3),
            "vibration_rms": max(0.0, vibration * (0.95 + 0.05 * load) + self.noise(0.08)),
            "motor_current": 8.0 + 3.2e-3 * self.speed * load + self.noise(0.4),
            "coolant_temp": 21.0 + 3.0e-4 * self.speed * load
            + (4.0 if overheat else 0.0) + self.noise(0.1),
            "cycle_time": cycle + self.noise(0.2),
            "part_count": float(math.floor(self.parts)),
            "reject_count": float(math.floor(self.rejects)),
            "running": 1.0 if running else 0.0,
        }
