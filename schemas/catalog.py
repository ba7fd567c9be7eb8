"""The plant catalog: sources, machines, tags, detector and rules, from one YAML file.

Every tag is named by its ISA-95 path ``enterprise/site/area/line/machine/tag``. Rules and
setpoints refer to tags as ``machine/tag``; :meth:`Catalog.resolve` turns that into the
full path. An OPC-UA tag names its node (``node`` or ``browse_path``, :mod:`schemas.opcua`);
a Modbus tag carries a register map entry (``register``, :mod:`schemas.registers`), written
in the YAML or loaded from a vendor CSV (``register_map``). The catalog describes the plant
only: how the simulator behaves is the simulator's own configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from schemas.catalog_base import FrozenSpec
from schemas.catalog_detection import AlarmSpec, DetectorSpec, RunStateSpec, check_detectors
from schemas.catalog_errors import describe_validation_error
from schemas.catalog_kpis import EnergySpec, KpiSpec, OeeSpec, StateTagsSpec, check_kpi_tags
from schemas.catalog_streams import RuleSpec, StreamsSpec, WindowSpec
from schemas.exceptions import CatalogError
from schemas.mqtt import MqttSpec, parse_broker
from schemas.opcua import MonitoringSpec, OpcUaSecurity, parse_browse_path, parse_node_ref
from schemas.register_csv import read_register_csv
from schemas.registers import ModbusRegister
from schemas.spc import SpcSection, SpcSpec

__all__ = [
    "AlarmSpec",
    "Catalog",
    "DetectorSpec",
    "HandshakeSpec",
    "KpiSpec",
    "MachineSpec",
    "ModbusRegister",
    "RuleSpec",
    "RunStateSpec",
    "SourceSpec",
    "StreamsSpec",
    "TagInfo",
    "TagSpec",
    "WindowSpec",
    "load_catalog",
]


class HandshakeSpec(FrozenSpec):
    """A PLC handshake after a setpoint write: the executor waits for ``ack`` (a tag of the
    same machine) to be 0, sets ``strobe`` to 1, waits for the PLC to set ``ack`` to 1, then
    clears the strobe, all within ``timeout_ms``. No acknowledgement, or an ack still up
    from the previous handshake that never drops: the command failed."""

    strobe: str = Field(pattern=r"^[a-z0-9_]+$")
    ack: str = Field(pattern=r"^[a-z0-9_]+$")
    timeout_ms: int = Field(default=2000, ge=10)


class TagSpec(FrozenSpec):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    unit: str = ""
    kind: Literal["analog", "counter", "state", "setpoint", "text"] = "analog"
    description: str = ""
    # normal operating range (documentation and dashboards; rules set their own limits)
    low: float | None = None
    high: float | None = None
    # for setpoints: the safety gateway refuses values outside [min, max]; for counters,
    # max is the value after which the counter wraps to 0 (the KPIs count across the wrap)
    min: float | None = None
    max: float | None = None
    default: float | None = None
    # setpoints: the largest change from the current value in one command; the fastest
    # change (units per second since the last write); how far the read-back may be from
    # the value written (default: float32 rounding); whether a second operator must
    # approve every command (two-person rule); a PLC handshake after the write
    max_step: float | None = Field(default=None, gt=0)
    max_rate_per_s: float | None = Field(default=None, gt=0)
    tolerance: float | None = Field(default=None, ge=0)
    two_person: bool = False
    handshake: HandshakeSpec | None = None
    # OPC-UA tags: the node, by node id or by browse path from Objects (one of the two)
    node: str | None = None
    browse_path: str | None = None
    monitoring: MonitoringSpec | None = None  # overrides the source's, field by field
    # Modbus tags: where the value lives (YAML key "register")
    modbus: ModbusRegister | None = Field(default=None, alias="register")

    @property
    def writable(self) -> bool:
        return self.kind == "setpoint"

    @model_validator(mode="after")
    def _addressing(self) -> TagSpec:
        if self.node is not None and self.browse_path is not None:
            raise ValueError(f"tag {self.name!r}: give 'node' or 'browse_path', not both")
        if self.node is not None:
            parse_node_ref(self.node)
        if self.browse_path is not None:
            parse_browse_path(self.browse_path)
        if self.modbus is not None and (self.node or self.browse_path):
            raise ValueError(f"tag {self.name!r}: a tag is OPC-UA (node) or Modbus (register)")
        if self.modbus is not None and (self.modbus.type == "string") != (self.kind == "text"):
            raise ValueError(
                f"tag {self.name!r}: a string register needs kind text, and kind text a string")
        return self


class MachineSpec(FrozenSpec):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    area: str
    line: str
    source: str
    description: str = ""
    # Modbus: the device's own host:port when it is not the source's (one connector polls
    # many devices, ``concurrency`` at a time), its unit (slave) id, poll period, largest read
    endpoint: str | None = None
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_ms: int | None = Field(default=None, ge=10)
    max_block: int | None = Field(default=None, ge=1, le=125)
    # Modbus: a vendor register map (CSV, relative to the catalog file) adding tags
    register_map: Path | None = None
    tags: list[TagSpec] = []
    # the digital twin and KPIs (schemas/catalog_kpis.py): which state tags say running,
    # fault, maintenance; the machine is in planned maintenance; OEE and energy inputs
    state_tags: StateTagsSpec = StateTagsSpec()
    maintenance: bool = False
    oee: OeeSpec | None = None
    energy: EnergySpec | None = None


class SourceSpec(FrozenSpec):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    protocol: Literal["opcua", "modbus", "mqtt"]
    # opc.tcp://host:port/path for OPC-UA, host:port for Modbus TCP (or RTU over TCP),
    # mqtt://host:port or mqtts://host:port for MQTT
    endpoint: str
    interval_ms: int = Field(default=200, ge=10)  # OPC-UA sampling+publishing / Modbus poll
    # OPC-UA: the namespace of browse names without a prefix; aliases usable in nsu=/paths
    namespace: str | None = None
    namespaces: dict[str, str] = {}
    monitoring: MonitoringSpec = MonitoringSpec()
    security: OpcUaSecurity = OpcUaSecurity()
    # Modbus: framing, timeout, read coalescing, devices polled at once
    framer: Literal["tcp", "rtu"] = "tcp"  # rtu: RTU frames over a TCP serial gateway
    timeout_ms: int = Field(default=1000, ge=10)
    max_gap: int = Field(default=4, ge=0, le=124)  # unused registers a read may span
    max_block: int = Field(default=125, ge=1, le=125)  # registers per read
    max_bits: int = Field(default=2000, ge=1, le=2000)  # coils/discrete inputs per read
    concurrency: int = Field(default=4, ge=1, le=256)
    # MQTT: session, credentials, topic mappings and Sparkplug B (schemas/mqtt.py)
    mqtt: MqttSpec | None = None

    @model_validator(mode="after")
    def _mqtt(self) -> SourceSpec:
        if (self.protocol == "mqtt") != (self.mqtt is not None):
            raise ValueError(
                f"source {self.name!r}: an mqtt source needs an 'mqtt:' section (topics or "
                "sparkplug), and only an mqtt source may have one")
        if self.protocol == "mqtt":
            parse_broker(self.endpoint)
        return self

    def monitoring_of(self, tag: TagSpec) -> MonitoringSpec:
        """The tag's monitored-item settings: the source's, then the tag's overrides."""
        base = self.monitoring.merged(None)
        if base.sampling_ms is None or base.publishing_ms is None:
            base = base.model_copy(update={
                "sampling_ms": base.sampling_ms if base.sampling_ms is not None
                else float(self.interval_ms),
                "publishing_ms": base.publishing_ms if base.publishing_ms is not None
                else float(self.interval_ms),
            })
        return base.merged(tag.monitoring)


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag with everything a stage needs to know about it, keyed by its path."""

    path: str
    machine: MachineSpec
    spec: TagSpec
    source: SourceSpec


class Catalog(FrozenSpec):
    enterprise: str
    site: str
    sources: list[SourceSpec]
    machines: list[MachineSpec]
    streams: StreamsSpec = StreamsSpec()
    detector: DetectorSpec | None = None  # one detector (older catalogs)
    detectors: list[DetectorSpec] | None = Field(default=None, min_length=1)
    alarms: AlarmSpec = AlarmSpec()
    rules: list[RuleSpec] = []
    kpis: KpiSpec = KpiSpec()
    spc: SpcSection = SpcSpec()  # control charts of quality characteristics (schemas.spc)

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
            protocol = by_name[m.source].protocol
            if protocol == "modbus":
                _check_registers(m)
            elif protocol == "opcua":
                _check_nodes(m, by_name[m.source])
            elif any(t.node or t.browse_path or t.modbus for t in m.tags):
                raise ValueError(f"machine {m.name!r} is on MQTT source {m.source!r}: its "
                                 "tags take no node, browse_path or register (the source's "
                                 "topic mappings or Sparkplug rule name them)")
        for m in self.machines:
            names = {t.name for t in m.tags}
            for t in m.tags:
                hs = t.handshake
                if hs is not None and not {hs.strobe, hs.ack} <= names:
                    raise ValueError(f"setpoint {m.name}/{t.name}: handshake tags "
                                     f"{hs.strobe!r} and {hs.ack!r} must be tags of {m.name}")
        for m in self.machines:
            check_kpi_tags(m)
        check_detectors(self)
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

    def detector_specs(self) -> list[DetectorSpec]:
        """The detectors that run: ``detectors``, or else the single ``detector``, or else
        the default: the univariate bank per tag and the PCA's SPE per machine."""
        if self.detectors:
            return list(self.detectors)
        if self.detector is not None:
            return [self.detector]
        return [DetectorSpec(kind="bank"), DetectorSpec(kind="pca", params={"t2": False})]


def _check_registers(m: MachineSpec) -> None:
    """Every tag of a Modbus machine has a register, and no two share one (bits of one
    register may go to different tags)."""
    whole: dict[tuple[int, str, int], str] = {}
    bits: dict[tuple[int, str, int], dict[int, str]] = {}
    for t in m.tags:
        if t.modbus is None:
            raise ValueError(f"Modbus tag {m.name}/{t.name} needs a 'register' "
                             "(table, address, type), or a row in the machine's register_map")
        reg = t.modbus
        unit = m.unit_id if reg.unit_id is None else reg.unit_id
        for address in range(reg.address, reg.end):
            slot = (unit, reg.table, address)
            taken = bits.get(slot, {})
            clash = whole.get(slot) or (
                taken.get(reg.bit) if reg.bit is not None else next(iter(taken.values()), None))
            if clash is not None:
                raise ValueError(
                    f"Modbus tags {m.name}/{clash} and {m.name}/{t.name} overlap at unit "
                    f"{unit} {reg.table} address {address}; give each its own register")
            if reg.bit is None:
                whole[slot] = t.name
            else:
                bits.setdefault(slot, {})[reg.bit] = t.name


def _check_nodes(m: MachineSpec, source: SourceSpec) -> None:
    """Every tag of an OPC-UA machine names its node, in a namespace the source knows."""
    for t in m.tags:
        if t.modbus is not None:
            raise ValueError(f"tag {m.name}/{t.name} has a Modbus register but its source "
                             f"{source.name!r} is OPC-UA; give it a 'node' or 'browse_path'")
        if t.node is None and t.browse_path is None:
            raise ValueError(
                f"OPC-UA tag {m.name}/{t.name} needs a 'node' (e.g. ns=2;s=Temperature, or "
                "nsu=urn:your:namespace;i=1234) or a 'browse_path' (e.g. Plant/Press/Temp); "
                "`millstream browse opcua URL` lists them")


DEFAULT_CATALOG = Path(__file__).resolve().parent / "plant.yaml"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog YAML (and the CSV register maps it names); errors
    name the file, the line, the entry, the value and what to do."""
    p = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogError(
            f"cannot read the plant catalog {p}: {exc.strerror}; "
            "set MILLSTREAM_CATALOG to a YAML file that exists"
        ) from exc
    try:
        # libyaml when present: a browsed catalog of 100,000 tags parses in seconds, not 30
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogError(f"the plant catalog {p} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"the plant catalog {p} must be a YAML mapping with enterprise, "
                           "site, sources and machines; see README.md 'Connect your plant'")
    doc = _with_register_maps(doc, p)
    try:
        return Catalog.model_validate(doc)
    except ValidationError as exc:
        raise CatalogError(describe_validation_error(p, text, exc)) from exc


def _with_register_maps(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """Machines with ``register_map: FILE.csv`` get one tag per CSV row, each row checked
    on its own so that an error names the CSV file and line."""
    machines = doc.get("machines")
    if not isinstance(machines, list):
        return doc
    out = []
    for m in machines:
        if isinstance(m, dict) and m.get("register_map"):
            csv_path = (path.parent / str(m["register_map"])).resolve()
            tags = list(m.get("tags") or [])
            for line, row in read_register_csv(csv_path):
                try:
                    TagSpec.model_validate(row)
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or 'row'}: "
                        f"{str(e['msg']).removeprefix('Value error, ')}"
                        for e in exc.errors(include_url=False))
                    raise CatalogError(
                        f"register map {csv_path} line {line} (machine {m.get('name')!r}) "
                        f"is invalid: {problems}; fix that row of the CSV") from exc
                tags.append(row)
            m = {**m, "tags": tags}
        out.append(m)
    return {**doc, "machines": out}
