"""The simulator's OPC-UA side: an asyncua Server with one Variable per tag.

Address space: Objects / enterprise / site / area / line / machine (an object) / tag, every
node with the string NodeId ``ns=<idx>;s=<ISA-95 path>`` in the source's namespace.
Setpoints are writable by clients; the simulator reads them back each tick.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import cast

from asyncua import Node, Server, ua

from connectors.simulator.exceptions import PortInUseError
from schemas.catalog import Catalog, TagSpec

__all__ = ["OpcUaSide"]

logger = logging.getLogger(__name__)


def _nodeid(path: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(path), ua.Int16(idx))


def _variant(value: float, tag: TagSpec) -> ua.Variant:
    if tag.kind == "state":
        return ua.Variant(bool(value), ua.VariantType.Boolean)
    return ua.Variant(float(value), ua.VariantType.Double)


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
        folders: dict[str, Node] = {}
        now = datetime.now(UTC)
        for source in self.catalog.sources:
            if source.protocol != "opcua":
                continue
            idx = await server.register_namespace(source.namespace)
            for m in self.catalog.machines_of(source.name):
                parent = server.nodes.objects
                parts = [self.catalog.enterprise, self.catalog.site, m.area, m.line]
                for depth, name in enumerate(parts, start=1):
                    key = f"{idx}:" + "/".join(parts[:depth])
                    if key not in folders:
                        folders[key] = await parent.add_folder(
                            _nodeid("/".join(parts[:depth]), idx), ua.QualifiedName(name, idx)
                        )
                    parent = folders[key]
                obj = await parent.add_object(
                    _nodeid(self.catalog.machine_path(m), idx), ua.QualifiedName(m.name, idx)
                )
                for tag in m.tags:
                    path = self.catalog.tag_path(m, tag)
                    nodeid = _nodeid(path, idx)
                    var = await obj.add_variable(
                        nodeid, ua.QualifiedName(tag.name, idx), _variant(values[path], tag)
                    )
                    if tag.writable:
                        await var.set_writable()
                    self._nodes[path] = (nodeid, tag)
                    await server.write_attribute_value(
                        nodeid, self._datavalue(values[path], tag, now)
                    )

    @staticmethod
    def _datavalue(value: float, tag: TagSpec, ts: datetime) -> ua.DataValue:
        stamp = cast(ua.DateTime, ts)  # asyncua's DateTime is a datetime subclass
        return ua.DataValue(_variant(value, tag), SourceTimestamp=stamp, ServerTimestamp=stamp)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def publish(self, values: dict[str, float], ts: datetime) -> None:
        """Write the tick's values with ``ts`` as source timestamp (setpoints are left alone)."""
        if self._server is None:
            return
        for path, (nodeid, tag) in self._nodes.items():
            if not tag.writable:
                await self._server.write_attribute_value(
                    nodeid, self._datavalue(values[path], tag, ts)
                )

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
