"""Readings frames of the plant's cnc-01 for the detection and alarm tests: one second at
a time, ten readings per tag around fixed levels with 0.3 % noise."""

from __future__ import annotations

import numpy as np

from schemas.readings import FrameBuilder

__all__ = ["CNC", "LEVELS", "T0", "cnc_second"]

T0 = 1_763_760_000_000
CNC = "acme/plant1/machining/line1/cnc-01"
LEVELS = {"spindle_speed": 8000.0, "spindle_temp": 59.0, "vibration_rms": 2.0,
          "motor_current": 33.0, "coolant_temp": 23.0, "cycle_time": 36.0}


def cnc_second(i: int, bump: float, rng: np.random.Generator, source: str = "opcua-sim"
               ) -> bytes:
    """Second ``i`` of cnc-01 (10 readings per tag), spindle_temp raised by ``bump``."""
    fb = FrameBuilder(source, epoch=1, next_seq=1 + 60 * i)
    for name, level in LEVELS.items():
        for j in range(10):
            v = level + (bump if name == "spindle_temp" else 0.0)
            fb.add(f"{CNC}/{name}", T0 + i * 1000 + j * 100,
                   v + float(rng.normal(0.0, 0.003 * level)))
    f = fb.flush()
    assert f is not None
    return f.encode()
