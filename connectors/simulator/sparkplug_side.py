"""The simulator's Sparkplug B side: one edge node per Sparkplug source of the catalog.

Each MQTT source with a ``sparkplug:`` section becomes an :class:`EdgeNode` (the source's
group and first edge node id; the source's ``host_id`` as its primary host) with one device
per machine of the source and one metric per tag. The names are chosen so that the
source's own tag rule maps them back onto the catalog: the device is the machine's name,
the metric the tag's name (or the name ``rename`` turns into it); anything else is refused
at start with the tag it concerns. Data goes out as DDATA by exception (changed values
only) every ``period_s``; a DCMD on a setpoint tag is queued for the physics.
"""

from __future__ import annotations

import logging
import queue
import socket
from typing import Any

from connectors.simulator.exceptions import SimulatorError
from connectors.simulator.sparkplug_node import DeviceMetric, EdgeNode
from schemas.catalog import Catalog, MachineSpec, SourceSpec, TagSpec
from schemas.exceptions import CatalogError
from schemas.mqtt import SparkplugSpec, parse_broker
from schemas.sparkplug import DataType

__all__ = ["SparkplugSide", "catalog_broker", "sparkplug_sources"]

logger = logging.getLogger(__name__)


def sparkplug_sources(catalog: Catalog) -> list[SourceSpec]:
    """The catalog's MQTT sources that bridge Sparkplug B edge nodes."""
    return [s for s in catalog.sources
            if s.protocol == "mqtt" and s.mqtt is not None and s.mqtt.sparkplug is not None]


def catalog_broker(catalog: Catalog) -> str | None:
    """The broker the catalog's first Sparkplug source names (None: it has none)."""
    sources = sparkplug_sources(catalog)
    return sources[0].endpoint if sources else None


def _datatype(tag: TagSpec) -> DataType:
    if tag.kind == "state":
        return DataType.Boolean
    if tag.kind == "text":
        return DataType.String
    return DataType.Double


def _metric_name(catalog: Catalog, source: SourceSpec, sp: SparkplugSpec, group: str,
                 node: str, machine: MachineSpec, tag: TagSpec) -> str:
    """The metric name the source's tag rule maps onto ``tag``; SimulatorError if none."""
    renamed = [metric for metric, name in sp.rename.items() if name == tag.name]
    want = catalog.tag_path(machine, tag)
    for name in [*renamed, tag.name]:
        ref = sp.tag_for(group, node, machine.name, name)
        try:
            if catalog.info(ref).path == want:
                return name
        except CatalogError:  # the rule names no tag of the catalog
            continue
    raise SimulatorError(
        f"source {source.name!r}: the simulator publishes machine {machine.name!r} as Sparkplug "
        f"device {machine.name!r} with metric {tag.name!r}, but the source's device_tag "
        f"{sp.device_tag!r} does not map that onto {want}; use device_tag '{{device}}/{{metric}}'"
        " or list the metric under 'rename'")


class SparkplugSide:
    """Edge nodes publishing the catalog's Sparkplug machines through one MQTT broker.

    Lifecycle: construct, ``start(values)`` (the nodes connect in the background and birth
    with ``values``), ``publish(values, ts_ms)`` per tick, ``commands()`` drains the DCMD
    setpoint writes, ``stop()`` (NDEATH, disconnect).
    """

    def __init__(self, catalog: Catalog, broker: str, *, period_s: float = 0.2) -> None:
        self.catalog = catalog
        self.broker = broker
        self.period_s = period_s
        self.nodes: list[EdgeNode] = []
        # (node, device) -> [(metric key = tag name, full path)]
        self._paths: dict[tuple[int, str], list[tuple[str, str]]] = {}
        self._sent: dict[str, float] = {}
        self._due_ms = 0
        self._commands: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        for source in sparkplug_sources(catalog):
            self._add_node(source)

    def _add_node(self, source: SourceSpec) -> None:
        assert source.mqtt is not None and source.mqtt.sparkplug is not None
        sp = source.mqtt.sparkplug
        group = "millstream" if sp.group == "+" else sp.group
        node = sp.edge_nodes[0] if sp.edge_nodes else f"{source.name}-node"
        devices: dict[str, list[DeviceMetric]] = {}
        paths: dict[str, dict[str, str]] = {}
        for m in self.catalog.machines_of(source.name):
            devices[m.name] = [
                DeviceMetric(_metric_name(self.catalog, source, sp, group, node, m, t),
                             _datatype(t), t.name, t.unit or "") for t in m.tags]
            paths[m.name] = {t.name: self.catalog.tag_path(m, t) for t in m.tags}

        def on_command(device: str, key: str, value: float) -> None:
            self._commands.put((paths[device][key], value))

        edge = EdgeNode(self.broker, group, node, devices, primary_host=sp.host_id,
                        on_command=on_command)
        for device, by_key in paths.items():
            self._paths[(len(self.nodes), device)] = list(by_key.items())
        self.nodes.append(edge)

    @property
    def machines(self) -> list[str]:
        return [device for _, device in self._paths]

    def start(self, values: dict[str, float]) -> None:
        if not self.nodes:
            return
        b = parse_broker(self.broker)
        try:
            socket.create_connection((b.host, b.port), timeout=1).close()
        except OSError as exc:
            logger.warning("no MQTT broker answers at %s (%s): the Sparkplug edge node(s) keep "
                           "trying; start one (Debian: apt-get install mosquitto) or pass "
                           "--mqtt-broker HOST:PORT", self.broker, exc.strerror or exc)
        for edge, device, changed in self._changed(values, force=True):
            edge.last[device].update(changed)  # what the first birth carries
        for edge in self.nodes:
            edge.start()
        logger.info("Sparkplug edge node(s) %s publishing %s via %s",
                    ", ".join(f"{e.group}/{e.node}" for e in self.nodes),
                    ", ".join(self.machines), self.broker)

    def publish(self, values: dict[str, float], ts_ms: int) -> None:
        """DDATA of what :meth:`changes` says is due."""
        for edge, device, changed in self.changes(values, ts_ms):
            edge.publish(device, changed, ts_ms)

    def changes(self, values: dict[str, float], ts_ms: int
                ) -> list[tuple[EdgeNode, str, dict[str, Any]]]:
        """Per device, the values changed since the last ones sent (report by exception),
        typed for Sparkplug; at most once per ``period_s``, else nothing."""
        if ts_ms < self._due_ms:
            return []
        self._due_ms = ts_ms + int(self.period_s * 1000)
        return self._changed(values)

    def _changed(self, values: dict[str, float], *, force: bool = False
                 ) -> list[tuple[EdgeNode, str, dict[str, Any]]]:
        out: list[tuple[EdgeNode, str, dict[str, Any]]] = []
        for (i, device), keys in self._paths.items():
            edge = self.nodes[i]
            changed: dict[str, Any] = {}
            for key, path in keys:
                if force or self._sent.get(path) != values[path]:
                    self._sent[path] = values[path]
                    changed[key] = values[path]
            kinds = {m.key: m.datatype for m in edge.devices[device]}
            if changed:
                out.append((edge, device, {k: bool(v) if kinds[k] == DataType.Boolean else v
                                           for k, v in changed.items()}))
        return out

    def commands(self) -> list[tuple[str, float]]:
        """The setpoint writes (full tag path, value) that arrived by DCMD since last asked."""
        out: list[tuple[str, float]] = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        for edge in self.nodes:
            edge.stop()
