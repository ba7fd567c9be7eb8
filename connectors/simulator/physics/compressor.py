"""An air compressor: discharge pressure follows its setpoint; compression heats the air."""

from __future__ import annotations

import math

import numpy as np

from connectors.simulator.faults import FaultKind
from connectors.simulator.physics.base import SHIFT_PERIOD_S, MachineModel, lag
from schemas.catalog import MachineSpec

__all__ = ["CompressorModel"]

PRESSURE_TAU_S = 3.0
TEMP_TAU_S = 4.0
HEAT_C_PER_BAR = 4.2  # discharge temperature rise per bar (~79 °C at 8 bar)
OVERHEAT_GAIN = 1.85  # an overheat fault: ~107 °C at 8 bar, ~96 °C at 6.5 bar
LOSS_FACTOR = 0.7


class CompressorModel(MachineModel):
    model = "compressor"
    setpoint_defaults = {"pressure_sp": 8.0}

    def __init__(self, machine: MachineSpec, rng: np.random.Generator) -> None:
        super().__init__(machine, rng)
        self.pressure = self.sp("pressure_sp")
        self.temp = self._temp_eq(self.pressure, 1.0, False)
        self.hours = float(rng.uniform(5000.0, 30000.0))

    @staticmethod
    def _temp_eq(pressure: float, load: float, overheat: bool) -> float:
        heat = HEAT_C_PER_BAR * pressure * (0.9 + 0.1 * load)
        return 45.0 + heat * (OVERHEAT_GAIN if overheat else 1.0)

    def _physics(self, dt: float, t: float) -> dict[str, float]:
        load = self.load(t)
        loss = self.fault(FaultKind.PRESSURE_LOSS) is not None
        overheat = self.fault(FaultKind.OVERHEAT) is not None
        target = self.sp("pressure_sp") * (LOSS_FACTOR if loss else 1.0)
        self.pressure = lag(self.pressure, target, PRESSURE_TAU_S, dt)
        self.temp = lag(self.temp, self._temp_eq(self.pressure, load, overheat), TEMP_TAU_S, dt)
        self.hours += dt / 3600.0
        speed = 1800.0 + 120.0 * (self.sp("pressure_sp") - 8.0) + 1500.0 * (load - 1.0)
        leak = self.noise(0.08) if loss else 0.0
        return {
            "discharge_pressure": max(0.0, self.pressure + leak + self.noise(0.03)),
            "discharge_temp": self.temp + self.noise(0.3),
            "inlet_temp": 20.0 + 3.0 * math.sin(2.0 * math.pi * t / SHIFT_PERIOD_S)
            + self.noise(0.1),
            "motor_current": 40.0 + 9.0 * self.pressure * load + self.noise(0.8),
            "motor_speed": speed + self.noise(4.0),
            "vibration_rms": max(0.0, 1.8 + self.wear(t, per_minute=3.0) + self.noise(0.06)),
            "running_hours": self.hours,
            "running": 1.0,
        }
