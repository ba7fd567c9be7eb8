"""The plant simulator: simulated CNC, press and compressor machines behind an OPC-UA
server and a Modbus TCP server, with seeded noise and a schedule of injected faults."""

from connectors.simulator.exceptions import FaultSpecError, PortInUseError, SimulatorError
from connectors.simulator.faults import Fault, FaultKind, FaultPlan
from connectors.simulator.plant import Plant
from connectors.simulator.server import PlantSimulator, run_simulator

__all__ = [
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FaultSpecError",
    "Plant",
    "PlantSimulator",
    "PortInUseError",
    "SimulatorError",
    "run_simulator",
]
