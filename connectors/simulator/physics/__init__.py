"""One small physics model per kind of machine ("cnc", "press", "compressor"); which one
simulates a machine is the simulator's configuration (:mod:`connectors.simulator.models`)."""

from __future__ import annotations

import zlib

import numpy as np

from connectors.simulator.models import model_of
from connectors.simulator.physics.base import MachineModel
from connectors.simulator.physics.cnc import CncModel
from connectors.simulator.physics.compressor import CompressorModel
from connectors.simulator.physics.press import PressModel
from schemas.catalog import MachineSpec

__all__ = ["MODELS", "CncModel", "CompressorModel", "MachineModel", "PressModel", "make_model"]

SEED_MASK = (1 << 64) - 1  # NumPy seeds must be non-negative

MODELS: dict[str, type[MachineModel]] = {
    "cnc": CncModel,
    "press": PressModel,
    "compressor": CompressorModel,
}


def make_model(machine: MachineSpec, seed: int) -> MachineModel:
    """The model for ``machine``, with a noise generator seeded from ``seed`` and its name."""
    rng = np.random.default_rng([seed & SEED_MASK, zlib.crc32(machine.name.encode())])
    return MODELS[model_of(machine)](machine, rng)
