"""The whole simulated plant without any server: every machine model, stepped together.

Lifecycle: ``Plant(catalog, seed, faults)``; ``set_setpoint(path, v)`` and ``force(path, v)``
any time; ``step(dt)`` once per tick returns every tag's value by full ISA-95 path.
Deterministic for a seed and a sequence of calls; the simulated time ``t`` is the sum of
the steps.
"""

from __future__ import annotations

import logging

from connectors.simulator.faults import Fault, FaultPlan
from connectors.simulator.physics import MachineModel, make_model
from schemas.catalog import Catalog
from schemas.exceptions import CatalogError

__all__ = ["Plant"]

logger = logging.getLogger(__name__)


class Plant:
    """Every machine of a catalog, stepped in simulated time."""

    def __init__(self, catalog: Catalog, seed: int = 7, faults: FaultPlan | None = None) -> None:
        self.catalog = catalog
        self.seed = seed
        self.plan = faults if faults is not None else FaultPlan.random(catalog, seed)
        self.t = 0.0
        self.models: dict[str, MachineModel] = {
            m.name: make_model(m, seed) for m in catalog.machines
        }
        # full tag path -> (machine name, tag name)
        self._where: dict[str, tuple[str, str]] = {
            catalog.tag_path(m, tag): (m.name, tag.name) for m in catalog.machines for tag in m.tags
        }
        # per machine, (full path, tag name) of its tags: built once, not every tick
        self._paths = [(m.name, [(catalog.tag_path(m, t), t.name) for t in m.tags])
                       for m in catalog.machines]
        self._active: list[Fault] = []
        self.values: dict[str, float] = {}
        self.physics: dict[str, float] = {}  # the models' values, before forcing
        self.forced: dict[str, float] = {}  # tags held at a value (full path)
        self._publish(0.0)

    def _locate(self, path: str) -> tuple[str, str]:
        if path in self._where:
            return self._where[path]
        return self._where[self.catalog.resolve(path)]

    def set_setpoint(self, path: str, value: float) -> None:
        """Set a setpoint tag (full path or ``machine/tag``); CatalogError if not a setpoint."""
        machine, tag = self._locate(path)
        if tag not in self.models[machine].setpoints:
            raise CatalogError(f"{path!r} is not a setpoint; only setpoint tags can be written")
        self.models[machine].set_setpoint(tag, value)
        self.values[path if path in self._where else self.catalog.resolve(path)] = (
            self.models[machine].setpoints[tag]
        )

    def force(self, path: str, value: float | None) -> float:
        """Hold a tag (full path or ``machine/tag``) at ``value`` whatever the physics says,
        as a PLC forces an input; ``None`` releases it. Returns the tag's value now."""
        self._locate(path)  # CatalogError names the machines if the tag is unknown
        full = path if path in self._where else self.catalog.resolve(path)
        if value is None:
            self.forced.pop(full, None)
            self.values[full] = self.physics[full]
        else:
            self.forced[full] = self.values[full] = float(value)
        return self.values[full]

    def setpoint(self, path: str) -> float:
        machine, tag = self._locate(path)
        return self.models[machine].setpoints[tag]

    def value(self, path: str) -> float:
        """The current value of a tag (full path or ``machine/tag``)."""
        if path in self.values:
            return self.values[path]
        return self.values[self.catalog.resolve(path)]

    def active_faults(self) -> list[Fault]:
        return list(self._active)

    def step(self, dt: float) -> dict[str, float]:
        """Advance every machine by ``dt`` seconds; every tag's value by full path."""
        self.t = round(self.t + dt, 9)  # so 10 steps of 0.1 s are exactly 1 s
        self._publish(dt)
        return self.values

    def _publish(self, dt: float) -> None:
        active = self.plan.active(self.t)
        for f in active:
            if f not in self._active:
                logger.info("fault started at t=%.1f s: %s", self.t, f)
        for f in self._active:
            if f not in active:
                logger.info("fault ended at t=%.1f s: %s", self.t, f)
        self._active = active
        values: dict[str, float] = {}
        for name, paths in self._paths:
            model = self.models[name]
            model.set_faults(active)
            out = model.step(dt, self.t)
            for path, tag in paths:
                values[path] = out[tag]
        self.physics = values
        self.values = {**values, **self.forced} if self.forced else values
