"""The plant catalog: sources, machines, tags, detector and rules, from one YAML file.

Every tag is named by its ISA-95 path ``enterprise/site/area/line/machine/tag``. Rules and
setpoints refer to tags as ``machine/tag``; :meth:`Catalog.resolve` turns that into the
full path. OPC-UA sources expose each tag as the string node id ``ns=<i>;s=<path>`` where
``i`` is the index of the source's ``namespace`` URI; Modbus tags carry a register map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.exceptions import CatalogError

__all__ = [
    "Catalog",
    "DetectorSpec",
    "MachineSpec",
    "ModbusRegister",
    "RuleSpec",
    "SourceSpec",
    "StreamsSpec",
    "TagInfo",
    "TagSpec",
    "load_catalog",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ModbusRegister(_Frozen):
    """Where a tag lives on a Modbus device. 32-bit types span two registers, high word first;
    a bool is a coil/discrete bit, or a register read as 0/1 (as many PLC maps do)."""

    table: Literal["input", "holding", "coil", "discrete"]
    address: int = Field(ge=0, le=65535)
    type: Literal["float32", "uint16", "int16", "uint32", "bool"] = "float32"

    @property
    def width(self) -> int:
        return 2 if self.type in ("float32", "uint32") else 1

    @model_validator(mode="after")
    def _fits(self) -> ModbusRegister:
        if self.type != "bool" and self.table in ("coil", "discrete"):
            raise ValueError(f"{self.table} tables hold bits: use type bool, not {self.type!r}")
        if self.address + self.width - 1 > 65535:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        return self


class TagSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    unit: str = ""
    kind: Literal["analog", "counter", "state", "setpoint"] = "analog"
    description: str = ""
    # normal operating range (documentation and dashboards; rules set their own limits)
    low: float | None = None
    high: float | None = None
    # for setpoints: the safety gateway refuses values outside [min, max]
    min: float | None = None
    max: float | None = None
    default: float | None = None
    # Modbus tags only: where the value lives (YAML key "register")
    modbus: ModbusRegister | None = Field(default=None, alias="register")

    @property
    def writable(self) -> bool:
        return self.kind == "setpoint"


class MachineSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    area: str
    line: str
    model: Literal["cnc", "press", "compressor"]  # which physics the simulator runs
    source: str
    unit_id: int = 1  # Modbus unit (slave) id
    tags: list[TagSpec]


class SourceSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    protocol: Literal["opcua", "modbus"]
    # opc.tcp://host:port/path for OPC-UA, host:port for Modbus TCP
    endpoint: str
    namespace: str = "urn:millstream:plant"
    interval_ms: int = Field(default=200, ge=10)  # OPC-UA sampling / Modbus polling period


class StreamsSpec(_Frozen):
    window_ms: int = Field(default=1000, ge=100)  # tumbling window size
    # how long after a window's end (in source time) it stays open for late readings
    lateness_ms: int = Field(default=1000, ge=0)


class DetectorSpec(_Frozen):
    # river.anomaly.StandardAbsoluteDeviation per (tag, feature) on window statistics
    kind: Literal["sad"] = "sad"
    threshold: float = Field(default=6.0, gt=0)
    warmup_windows: int = Field(default=10, ge=1)
    features: list[Literal["mean", "std", "max", "min"]] = ["mean", "std"]
    # after this many anomalous windows in a row the tag has a new operating point (a new
    # setpoint, another product): forget its statistics and warm up again on the new level
    rebaseline_windows: int = Field(default=30, ge=1)


class ActionSpec(_Frozen):
    setpoint: str  # machine/tag of a writable setpoint
    value: float


class RuleSpec(_Frozen):
    """``limit``: a window statistic beyond a bound; ``sustained_anomaly``: N anomalous
    windows in a row for the tag. Either issues ``action``, at most once per cooldown."""

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    kind: Literal["limit", "sustained_anomaly"]
    tag: str  # machine/tag
    statistic: Literal["max", "min", "mean"] = "max"
    above: float | None = None
    below: float | None = None
    windows: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)
    action: ActionSpec

    @model_validator(mode="after")
    def _bounds(self) -> RuleSpec:
        if self.kind == "limit" and self.above is None and self.below is None:
            raise ValueError(f"limit rule {self.name!r} needs 'above' or 'below'")
        return self


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag with everything a stage needs to know about it, keyed by its path."""

    path: str
    machine: MachineSpec
    spec: TagSpec
    source: SourceSpec


class Catalog(_Frozen):
    enterprise: str
    site: str
    sources: list[SourceSpec]
    machines: list[MachineSpec]
    streams: StreamsSpec = StreamsSpec()
    detector: DetectorSpec = DetectorSpec()
    rules: list[RuleSpec] = []

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        sources = {s.name for s in self.sources}
        if len(sources) != len(self.sources):
            raise ValueError("source names must be unique")
        if len({m.name for m in self.machines}) != len(self.machines):
            raise ValueError("machine names must be unique")
        by_name = {s.name: s for s in self.sources}
        for m in self.machines:
            if m.source not in sources:
                raise ValueError(f"machine {m.name!r} names unknown source {m.source!r}")
            if len({t.name for t in m.tags}) != len(m.tags):
                raise ValueError(f"machine {m.name!r} has duplicate tag names")
            if by_name[m.source].protocol == "modbus":
                used: dict[tuple[str, int], str] = {}
                for t in m.tags:
                    if t.modbus is None:
                        raise ValueError(f"Modbus tag {m.name}/{t.name} needs a 'register'")
                    for i in range(t.modbus.width):
                        slot = (t.modbus.table, t.modbus.address + i)
                        if slot in used:
                            raise ValueError(
                                f"Modbus tags {m.name}/{used[slot]} and {m.name}/{t.name} "
                                f"overlap at {slot[0]} register {slot[1]}")
                        used[slot] = t.name
        for r in self.rules:
            self.info(r.tag)
            sp = self.info(r.action.setpoint)
            if not sp.spec.writable:
                raise ValueError(f"rule {r.name!r}: {r.action.setpoint} is not a setpoint")
        return self

    # -- paths -------------------------------------------------------------------------
    def machine_path(self, m: MachineSpec) -> str:
        return f"{self.enterprise}/{self.site}/{m.area}/{m.line}/{m.name}"

    def tag_path(self, m: MachineSpec, t: TagSpec) -> str:
        return f"{self.machine_path(m)}/{t.name}"

    def tags(self) -> Mapping[str, TagInfo]:
        """Every tag by its full ISA-95 path (built once: the catalog is frozen)."""
        return self._index[0]

    @cached_property
    def _index(self) -> tuple[dict[str, TagInfo], dict[str, TagInfo]]:
        """Tags by full path, and by ``machine/tag``."""
        src = {s.name: s for s in self.sources}
        full: dict[str, TagInfo] = {}
        short: dict[str, TagInfo] = {}
        for m in self.machines:
            for t in m.tags:
                info = TagInfo(self.tag_path(m, t), m, t, src[m.source])
                full[info.path] = short[f"{m.name}/{t.name}"] = info
        return full, short

    def resolve(self, short: str) -> str:
        """``machine/tag`` (or a full path) -> full ISA-95 path; CatalogError if unknown."""
        return self.info(short).path

    def info(self, path: str) -> TagInfo:
        """The tag named by its full path or ``machine/tag``; CatalogError if unknown."""
        full, short = self._index
        found = full.get(path) or short.get(path)
        if found is None:
            raise CatalogError(
                f"tag {path!r} is not in the catalog; name it as 'machine/tag' "
                f"(machines: {', '.join(m.name for m in self.machines)})"
            )
        return found

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        have = ", ".join(s.name for s in self.sources)
        raise CatalogError(f"source {name!r} is not in the catalog (have: {have})")

    def machines_of(self, source: str) -> list[MachineSpec]:
        return [m for m in self.machines if m.source == source]


DEFAULT_CATALOG = Path(__file__).resolve().parent / "plant.yaml"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog YAML; errors name the file and the bad entry."""
    p = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogError(
            f"cannot read the plant catalog {p}: {exc.strerror}; "
            "set MILLSTREAM_CATALOG to a YAML file that exists"
        ) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"the plant catalog {p} is not valid YAML: {exc}") from exc
    try:
        return Catalog.model_validate(doc)
    except ValidationError as exc:
        raise CatalogError(f"the plant catalog {p} is invalid:\n{exc}") from exc
