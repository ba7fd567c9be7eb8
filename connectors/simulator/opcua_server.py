"""The simulator's OPC-UA side: an asyncua Server with one Variable per tag.

Address space: Objects / Plant / area / line / machine / tag, each variable with the node
id the catalog gives it (``node``); a tag named by ``browse_path`` sits at that path.
Setpoints are writable by clients; the simulator reads them back each tick.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import cast

from asyncua import Node, Server, ua

from connectors.simulator.exceptions import PortInUseError
from schemas.catalog import Catalog, SourceSpec, TagSpec
from schemas.opcua import parse_browse_path, parse_node_ref

__all__ = ["OpcUaSide"]

logger = logging.getLogger(__name__)


def _variant(value: float, tag: TagSpec) -> ua.Variant:
    if tag.kind == "state":
        return ua.Variant(bool(value), ua.VariantType.Boolean)
    return ua.Variant(float(value), ua.VariantType.Double)


class _Namespaces:
    """A source's namespace URIs and aliases, registered on the server on first use."""

    def __init__(self, server: Server, source: SourceSpec) -> None:
        self.server = server
        self.source = source

    async def index(self, ns: int | str | None) -> int:
        if isinstance(ns, int):
            return ns
        uri = self.source.namespace or "urn:millstream:plant" if ns is None else (
            self.source.namespaces.get(ns, ns))
        return int(await self.server.register_namespace(uri))


class _Folders:
    """Folders under Objects, created on first use, by browse names."""

    def __init__(self, root: Node, namespaces: _Namespaces) -> None:
        self.root = root
        self.namespaces = namespaces
        self._made: dict[tuple[tuple[int, str], ...], Node] = {}

    async def get(self, names: list[tuple[int | str | None, str]]) -> Node:
        node: Node = self.root
        key: tuple[tuple[int, str], ...] = ()
        for ns, name in names:
            idx = await self.namespaces.index(ns)
            key = (*key, (idx, name))
            if key not in self._made:
                self._made[key] = await node.add_folder(idx, name)
            node = self._made[key]
        return node


class OpcUaSide:
    """An OPC-UA server on 127.0.0.1:port, no security, serving the catalog's OPC-UA tags.

    Lifecycle: construct, ``await start(values)``, ``publish``/``setpoints`` per tick,
    ``await stop()``.
    """

    def __init__(self, catalog: Catalog, port: int) -> None:
        self.catalog = catalog
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/millstream/"
        self._server: Server | None = None
        # full path -> (node id, tag spec)
        self._nodes: dict[str, tuple[ua.NodeId, TagSpec]] = {}
        self._written: dict[str, float] = {}  # the value each tag was last served with

    async def start(self, values: dict[str, float]) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("millstream plant simulator")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])  # no security, no users
        await self._build(server, values)
        try:
            await server.start()
        except OSError as exc:
            raise PortInUseError("OPC-UA", self.port, exc.strerror or str(exc)) from exc
        self._server = server
        logger.info("OPC-UA simulator serving %d tag(s) at %s", len(self._nodes), self.endpoint)

    async def _build(self, server: Server, values: dict[str, float]) -> None:
        now = datetime.now(UTC)
        for source in self.catalog.sources:
            if source.protocol != "opcua":
                continue
            namespaces = _Namespaces(server, source)
            home = await namespaces.index(None)
            folders = _Folders(server.nodes.objects, namespaces)
            for m in self.catalog.machines_of(source.name):
                machine = ["Plant", m.area, m.line, m.name]
                for tag in m.tags:
                    path = self.catalog.tag_path(m, tag)
                    if tag.browse_path is not None:
                        *parents, (ns, name) = parse_browse_path(tag.browse_path)
                        parent = await folders.get(parents)
                        idx = await namespaces.index(ns)
                        nodeid = ua.NodeId(ua.String(f"auto/{path}"), ua.Int16(home))
                    else:
                        parent = await folders.get([(None, part) for part in machine])
                        ref = parse_node_ref(str(tag.node))
                        idx, name = await namespaces.index(ref.namespace), tag.name
                        nodeid = ua.NodeId.from_string(ref.with_index(idx))
                    var = await parent.add_variable(
                        nodeid, ua.QualifiedName(name, idx), _variant(values[path], tag))
                    if tag.writable:
                        await var.set_writable()
                    self._nodes[path] = (nodeid, tag)
                    await server.write_attribute_value(
                        nodeid, self._datavalue(values[path], tag, now))

    @staticmethod
    def _datavalue(value: float, tag: TagSpec, ts: datetime) -> ua.DataValue:
        stamp = cast(ua.DateTime, ts)  # asyncua's DateTime is a datetime subclass
        return ua.DataValue(_variant(value, tag), SourceTimestamp=stamp, ServerTimestamp=stamp)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def publish(self, values: dict[str, float], ts: datetime) -> None:
        """Serve the tick's values that changed, with ``ts`` as their source timestamp
        (setpoints are left alone: clients own them)."""
        if self._server is None:
            return
        written = self._written
        for path, (nodeid, tag) in self._nodes.items():
            value = values[path]
            if not tag.writable and written.get(path) != value:  # a change, as a PLC reports
                await self._server.write_attribute_value(nodeid, self._datavalue(value, tag, ts))
                written[path] = value

    async def publish_one(self, path: str, value: float, ts: datetime) -> None:
        """Write one tag's value now (a tag this side does not serve is ignored)."""
        found = self._nodes.get(path)
        if self._server is not None and found is not None:
            nodeid, tag = found
            await self._server.write_attribute_value(nodeid, self._datavalue(value, tag, ts))
            self._written[path] = value

    def setpoints(self) -> dict[str, float]:
        """Every setpoint tag's current node value (as clients last wrote it), by full path."""
        out: dict[str, float] = {}
        if self._server is None:
            return out
        for path, (nodeid, tag) in self._nodes.items():
            if tag.writable:
                value = self._server.read_attribute_value(nodeid).Value
                if value is not None and isinstance(value.Value, int | float):
                    out[path] = float(value.Value)
        return out
