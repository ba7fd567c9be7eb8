"""Faults the simulator injects, and the schedule (plan) that says when.

Times are seconds after the simulator starts. A plan is either seeded-random
(:meth:`FaultPlan.random`, the default) or written by hand as specs
(:meth:`FaultPlan.parse`): ``overheat@cnc-01:10`` or ``stuck_sensor@press-01/oil_temp:5+30``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from connectors.simulator.exceptions import FaultSpecError
from connectors.simulator.models import model_of
from schemas.catalog import Catalog, MachineSpec

__all__ = ["DEFAULT_DURATION_S", "Fault", "FaultKind", "FaultPlan", "applies_to"]

DEFAULT_DURATION_S = 60.0


class FaultKind(str, Enum):
    BEARING_WEAR = "bearing_wear"  # vibration drifts up a few mm/s per minute
    OVERHEAT = "overheat"  # extra heat on the machine's hot spot
    PRESSURE_LOSS = "pressure_loss"  # hydraulic / discharge pressure drops (press, compressor)
    STUCK_SENSOR = "stuck_sensor"  # one analog tag freezes at its last value


# which machine models each fault kind makes sense for
_MODELS: dict[FaultKind, frozenset[str]] = {
    FaultKind.BEARING_WEAR: frozenset({"cnc", "press", "compressor"}),
    FaultKind.OVERHEAT: frozenset({"cnc", "press", "compressor"}),
    FaultKind.PRESSURE_LOSS: frozenset({"press", "compressor"}),
    FaultKind.STUCK_SENSOR: frozenset({"cnc", "press", "compressor"}),
}


def applies_to(kind: FaultKind, machine: MachineSpec) -> bool:
    return model_of(machine) in _MODELS[kind] and (
        kind is not FaultKind.STUCK_SENSOR or bool(_analog_tags(machine))
    )


def _analog_tags(machine: MachineSpec) -> list[str]:
    return [t.name for t in machine.tags if t.kind == "analog"]


@dataclass(frozen=True)
class Fault:
    """One fault on one machine (and, for stuck_sensor, one tag) over a time span."""

    kind: FaultKind
    machine: str
    tag: str | None
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active_at(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    def __str__(self) -> str:
        where = f"{self.machine}/{self.tag}" if self.tag else self.machine
        return f"{self.kind.value}@{where}:{self.start_s:g}+{self.duration_s:g}"


_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+)@(?P<machine>[a-z0-9-]+)(?:/(?P<tag>[a-z0-9_]+))?"
    r":(?P<start>[0-9]+(?:\.[0-9]*)?)(?:\+(?P<dur>[0-9]+(?:\.[0-9]*)?))?$"
)


@dataclass
class FaultPlan:
    """When which fault happens; faults may overlap."""

    faults: list[Fault] = field(default_factory=list)

    def active(self, t: float) -> list[Fault]:
        return [f for f in self.faults if f.active_at(t)]

    @classmethod
    def random(
        cls,
        catalog: Catalog,
        seed: int,
        first_after_s: float = 20.0,
        every_s: float = 45.0,
        horizon_s: float = 3600.0,
    ) -> FaultPlan:
        """One fault every ``every_s`` from ``first_after_s`` on, each on a machine and of a
        kind chosen with a generator seeded by ``seed``; each ends before the next starts."""
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        rng = np.random.default_rng([seed & ((1 << 64) - 1), 0xFA17])
        choices = [
            (kind, m) for m in catalog.machines for kind in FaultKind if applies_to(kind, m)
        ]
        faults: list[Fault] = []
        start = first_after_s
        while choices and start < horizon_s:
            kind, machine = choices[int(rng.integers(len(choices)))]
            tag = None
            if kind is FaultKind.STUCK_SENSOR:
                analog = _analog_tags(machine)
                tag = analog[int(rng.integers(len(analog)))]
            longest = max(1.0, min(40.0, every_s - 5.0))
            duration = float(rng.uniform(min(20.0, longest), longest))
            faults.append(Fault(kind, machine.name, tag, round(start, 3), round(duration, 3)))
            start += every_s
        return cls(faults)

    @classmethod
    def parse(cls, specs: list[str], catalog: Catalog) -> FaultPlan:
        """Faults from ``kind@machine[/tag]:start_s[+duration_s]`` specs (default duration
        60 s); FaultSpecError names the bad spec and says how to write it."""
        return cls([_parse_one(spec, catalog) for spec in specs])


def _parse_one(spec: str, catalog: Catalog) -> Fault:
    text = spec.strip()
    m = _SPEC.match(text)
    if m is None:
        raise FaultSpecError(
            spec,
            "write it as kind@machine[/tag]:start_s[+duration_s], "
            "e.g. overheat@cnc-01:10 or stuck_sensor@press-01/oil_temp:5+30",
        )
    kinds = ", ".join(k.value for k in FaultKind)
    try:
        kind = FaultKind(m["kind"])
    except ValueError as exc:
        raise FaultSpecError(spec, f"unknown fault kind {m['kind']!r} (kinds: {kinds})") from exc
    machines = {mc.name: mc for mc in catalog.machines}
    machine = machines.get(m["machine"])
    if machine is None:
        raise FaultSpecError(
            spec, f"no machine {m['machine']!r} in the catalog (machines: {', '.join(machines)})"
        )
    if not applies_to(kind, machine):
        ok = ", ".join(sorted(_MODELS[kind]))
        raise FaultSpecError(
            spec, f"{kind.value} does not apply to a {model_of(machine)} machine (applies to: {ok})"
        )
    tag = m["tag"]
    analog = _analog_tags(machine)
    if kind is FaultKind.STUCK_SENSOR:
        if tag is None or tag not in analog:
            raise FaultSpecError(
                spec,
                f"stuck_sensor needs an analog tag of {machine.name}, "
                f"e.g. {kind.value}@{machine.name}/{analog[0]}:{m['start']} "
                f"(analog tags: {', '.join(analog)})",
            )
    elif tag is not None:
        raise FaultSpecError(spec, f"{kind.value} applies to a whole machine: drop '/{tag}'")
    duration = float(m["dur"]) if m["dur"] is not None else DEFAULT_DURATION_S
    if duration <= 0:
        raise FaultSpecError(spec, "the duration must be more than 0 seconds")
    return Fault(kind, machine.name, tag, float(m["start"]), duration)
