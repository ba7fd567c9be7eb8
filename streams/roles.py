"""What each catalog tag means to the twin and the KPIs, and how a machine's state is decided.

:class:`PlantRoles` numbers the catalog's machines and tags once and says, per tag, which
machine it belongs to and which role it plays (running, fault, maintenance, part counter,
reject counter, power or current). :func:`machine_state` is the one rule both the live
twin and the event-time KPIs use: maintenance > fault > running > idle, and unknown while
the machine's running state is not known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from schemas.catalog import Catalog, MachineSpec, TagSpec
from schemas.catalog_kpis import POWER_UNITS
from schemas.twin import MachineState

__all__ = ["IS_STATE", "STATE_ROLES", "MachineInfo", "PlantRoles", "Role", "machine_state"]


class Role(IntEnum):
    NONE = 0
    RUNNING = 1
    FAULT = 2
    MAINTENANCE = 3
    PARTS = 4
    REJECTS = 5
    POWER = 6  # value * scale is kW (from a power tag, or a current tag times V * pf)


STATE_ROLES = (Role.RUNNING, Role.FAULT, Role.MAINTENANCE)
IS_STATE = np.zeros(len(Role), bool)  # indexed by role: a state role?
IS_STATE[[int(r) for r in STATE_ROLES]] = True


@dataclass(frozen=True, slots=True)
class MachineInfo:
    index: int
    path: str
    spec: MachineSpec
    power_scale: float | None  # kW per unit of the energy tag; None: no energy spec
    modulus: dict[Role, float]  # counter role -> where it wraps: 0 follows modulus - step


def machine_state(running: bool | None, fault: bool | None, maintenance: bool | None,
                  planned_maintenance: bool = False) -> MachineState:
    """maintenance (planned in the catalog, or the maintenance tag is 1) > fault > running >
    idle; unknown when neither maintenance nor a fault says otherwise and running is not
    known (no reading yet, or its last reading was BAD)."""
    if planned_maintenance or maintenance:
        return MachineState.MAINTENANCE
    if fault:
        return MachineState.FAULT
    if running is None:
        return MachineState.UNKNOWN
    return MachineState.RUNNING if running else MachineState.IDLE


_UNSIGNED_BITS = {"uint16": 16, "uint32": 32, "uint64": 64}


def _modulus(t: TagSpec) -> float | None:
    """Where a counter wraps: the tag's ``max`` + 1 if the catalog gives one (a counter
    counting in steps of 1), else what an unsigned Modbus register holds, scaled."""
    if t.max is not None:
        return t.max + 1.0
    reg = t.modbus
    if reg is not None and reg.type in _UNSIGNED_BITS and reg.offset == 0 and reg.scale > 0:
        return float(2 ** _UNSIGNED_BITS[reg.type]) * reg.scale
    return None


def _power_scale(m: MachineSpec) -> float | None:
    e = m.energy
    if e is None:
        return None
    if e.power is not None:
        unit = next(t.unit for t in m.tags if t.name == e.power)
        return POWER_UNITS[unit]
    factor = math.sqrt(3.0) if e.phases == 3 else 1.0
    return factor * float(e.voltage_v or 0.0) * e.power_factor / 1000.0


class PlantRoles:
    """The catalog's machines and tags, numbered, with each tag's machine and role."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.machines: list[MachineInfo] = []
        self.paths: list[str] = []
        self.index: dict[str, int] = {}
        machine_of: list[int] = []
        role_of: list[int] = []
        for mi, m in enumerate(catalog.machines):
            roles: dict[str, Role] = {
                m.state_tags.running: Role.RUNNING, m.state_tags.fault: Role.FAULT,
                m.state_tags.maintenance: Role.MAINTENANCE}
            if m.oee is not None:
                roles[m.oee.parts] = Role.PARTS
                if m.oee.rejects is not None:
                    roles[m.oee.rejects] = Role.REJECTS
            if m.energy is not None:
                roles[m.energy.power or m.energy.current or ""] = Role.POWER
            modulus: dict[Role, float] = {}
            for t in m.tags:
                path = catalog.tag_path(m, t)
                role = roles.get(t.name, Role.NONE)
                if role in STATE_ROLES and t.kind != "state":
                    role = Role.NONE  # a state role needs a state tag
                if role in (Role.PARTS, Role.REJECTS) and (top := _modulus(t)) is not None:
                    modulus[role] = top
                self.index[path] = len(self.paths)
                self.paths.append(path)
                machine_of.append(mi)
                role_of.append(int(role))
            self.machines.append(MachineInfo(mi, catalog.machine_path(m), m, _power_scale(m),
                                             modulus))
        self.machine_of: npt.NDArray[np.int64] = np.asarray(machine_of, np.int64)
        self.role_of: npt.NDArray[np.int8] = np.asarray(role_of, np.int8)
        self.by_path = {m.path: m for m in self.machines}

    def ids(self, tags: list[str]) -> npt.NDArray[np.int64]:
        """Tag paths (all in the catalog) -> their numbers."""
        return np.fromiter(map(self.index.__getitem__, tags), np.int64, len(tags))
