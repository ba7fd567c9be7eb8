"""Which physics model simulates each machine: the simulator's own configuration.

``simulation.yaml`` beside this file maps machine names to models. A machine it does not
list runs the model its name starts with (``cnc-02`` runs ``cnc``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from connectors.simulator.exceptions import SimulatorError
from schemas.catalog import MachineSpec

__all__ = ["MODEL_NAMES", "SIMULATION_FILE", "model_of"]

SIMULATION_FILE = Path(__file__).resolve().with_name("simulation.yaml")
MODEL_NAMES = ("cnc", "press", "compressor")


@cache
def _table(path: Path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text()) or {}
    table = doc.get("machines") or {}
    bad = {m: v for m, v in table.items() if v not in MODEL_NAMES}
    if bad:
        raise SimulatorError(f"{path}: unknown model(s) {bad}; models are {', '.join(MODEL_NAMES)}")
    return {str(k): str(v) for k, v in table.items()}


def model_of(machine: MachineSpec, path: Path = SIMULATION_FILE) -> str:
    """The physics model that simulates ``machine``; SimulatorError if none fits."""
    table = _table(path)
    if machine.name in table:
        return table[machine.name]
    for model in MODEL_NAMES:
        if machine.name.startswith(model):
            return model
    raise SimulatorError(
        f"machine {machine.name!r} has no simulation model; map it to one of "
        f"{', '.join(MODEL_NAMES)} in {path}")
