"""Device writers: write one setpoint to a machine and read it back, one per protocol.

A :class:`DeviceWriter` keeps its connection open between commands; when a write fails
on the connection it drops it and the next call reconnects. :class:`DevicePool` picks the
writer of a tag's source from the catalog. Modbus values travel as registers in the
catalog's encoding (:mod:`schemas.modbus`): the register's type, byte/word order, scale and
offset, at the machine's endpoint and the register's unit id.

Lifecycle: ``pool = DevicePool(catalog, endpoints)``; ``await pool.write_and_read_back(path,
value)`` per command; ``await pool.close()`` at the end.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.node import Node
from pymodbus.client import AsyncModbusTcpClient

from schemas import modbus
from schemas.catalog import Catalog, ModbusRegister, SourceSpec, TagInfo
from schemas.exceptions import CatalogError, OpcUaSecurityError
from schemas.modbus_wire import ModbusIOError, make_client, read_table, write_registers
from schemas.opcua_client import connect_client
from schemas.opcua_nodes import resolve_nodes
from sinks.exceptions import DeviceError

__all__ = [
    "DeviceError",
    "DevicePool",
    "DeviceWriter",
    "ModbusWriter",
    "OpcUaWriter",
    "setpoint_words",
]

logger = logging.getLogger(__name__)


class DeviceWriter(abc.ABC):
    """Writes setpoints of one source. Implementations reconnect on their own."""

    @abc.abstractmethod
    async def write_and_read_back(self, tag_path: str, value: float) -> float:
        """Write ``value`` to the setpoint ``tag_path`` and return what the device reads back."""

    @abc.abstractmethod
    async def read_value(self, tag_path: str) -> float:
        """The setpoint's current value on the device (read before a write, for the
        safety gateway's step and rate checks)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; a later write reconnects."""


def setpoint_words(value: float, reg_type: str) -> list[int]:
    """The holding-register words for a setpoint; a bool register cannot hold one."""
    if reg_type == "bool":
        raise ValueError("a 'bool' register cannot hold a setpoint")
    return modbus.encode(value, reg_type)


class ModbusWriter(DeviceWriter):
    """Writes setpoints to holding registers over Modbus TCP (or RTU over TCP, the source's
    ``framer``) with the catalog's codec: type, byte/word order, scale and offset.

    A setpoint goes to its machine's own ``endpoint`` (else the source's) at the register's
    ``unit_id`` (else the machine's). A ``bit`` setpoint is a read-modify-write of its
    register: the other 15 bits are written back as read (a device that needs them kept
    atomically should map the setpoint to a register of its own). Every write is read back.
    One client per endpoint, kept open between commands and dropped when it fails.
    """

    def __init__(self, catalog: Catalog, source: SourceSpec, endpoint: str,
                 *, timeout: float | None = None) -> None:
        modbus.parse_endpoint(endpoint)  # a bad endpoint fails here, not at the first write
        self.catalog = catalog
        self.source = source
        self.endpoint = endpoint
        self._timeout = source.timeout_ms / 1000 if timeout is None else timeout
        self._clients: dict[str, AsyncModbusTcpClient] = {}

    async def _connected(self, endpoint: str) -> AsyncModbusTcpClient:
        client = self._clients.get(endpoint)
        if client is not None and client.connected:
            return client
        self._drop(endpoint)
        client = make_client(endpoint, framer=self.source.framer, timeout_s=self._timeout)
        try:
            ok = bool(await client.connect()) and client.connected
        except (OSError, TimeoutError) as exc:
            logger.debug("Modbus connect to %s failed: %r", endpoint, exc)
            ok = False
        if not ok:
            client.close()
            raise ModbusIOError(
                "connection", f"cannot connect to Modbus device at {endpoint}; check that it "
                "is reachable or set the source's (or the machine's) endpoint")
        self._clients[endpoint] = client
        return client

    async def write_and_read_back(self, tag_path: str, value: float) -> float:
        info = self.catalog.info(tag_path)
        reg = info.spec.modbus
        if reg is None or reg.table != "holding" or reg.type in ("bool", "string"):
            where = ("no register" if reg is None else f"a {reg.type} {reg.table} register")
            raise DeviceError(self.source.name, tag_path,
                              f"{where}; a setpoint must map to a numeric holding register "
                              "(or a bit of one)")
        unit = info.machine.unit_id if reg.unit_id is None else reg.unit_id
        endpoint = info.machine.endpoint or self.endpoint
        words = None if reg.type == "bit" else self._encode(tag_path, value, reg)
        try:
            client = await self._connected(endpoint)
            if words is None:  # a bit: read-modify-write of its register
                current = await read_table(client, "holding", reg.address, 1, unit)
                words = self._encode(tag_path, value, reg, [int(w) for w in current])
            await write_registers(client, reg.address, words, unit)
            back = await read_table(client, "holding", reg.address, reg.width, unit)
        except ModbusIOError as exc:
            if exc.kind != "exception":  # the device answered: the connection is fine
                self._drop(endpoint)
            raise DeviceError(self.source.name, tag_path,
                              f"Modbus device at {endpoint} (unit {unit}): {exc}") from exc
        readback = modbus.decode_register([int(w) for w in back], reg)
        if isinstance(readback, str):
            raise DeviceError(self.source.name, tag_path, f"read back text {readback!r}")
        return readback

    async def read_value(self, tag_path: str) -> float:
        info = self.catalog.info(tag_path)
        reg = info.spec.modbus
        if reg is None or reg.type == "string":
            raise DeviceError(self.source.name, tag_path, "no numeric register to read")
        unit = info.machine.unit_id if reg.unit_id is None else reg.unit_id
        endpoint = info.machine.endpoint or self.endpoint
        try:
            client = await self._connected(endpoint)
            words = await read_table(client, reg.table, reg.address, reg.width, unit)
        except ModbusIOError as exc:
            if exc.kind != "exception":
                self._drop(endpoint)
            raise DeviceError(self.source.name, tag_path,
                              f"Modbus device at {endpoint} (unit {unit}): {exc}") from exc
        value = modbus.decode_register([int(w) for w in words], reg)
        if isinstance(value, str):
            raise DeviceError(self.source.name, tag_path, f"read text {value!r}")
        return float(value)

    def _encode(self, tag_path: str, value: float, reg: ModbusRegister,
                current: list[int] | None = None) -> list[int]:
        try:
            return modbus.encode_register(value, reg, current)
        except ValueError as exc:
            raise DeviceError(self.source.name, tag_path, str(exc)) from exc

    def _drop(self, endpoint: str) -> None:
        client = self._clients.pop(endpoint, None)
        if client is not None:
            client.close()

    async def close(self) -> None:
        for endpoint in list(self._clients):
            self._drop(endpoint)


class OpcUaWriter(DeviceWriter):
    """Writes setpoint variables over OPC-UA with an asyncua client.

    A tag's node is the one the catalog names (``node`` or ``browse_path``), resolved once
    per session; the value is written in the variable's own data type (Float, Int16, ...).
    """

    def __init__(self, catalog: Catalog, source: SourceSpec, endpoint: str, *,
                 timeout: float = 3.0, pki_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.source = source
        self.endpoint = endpoint
        self._timeout = timeout
        self.pki_dir = pki_dir  # OPC-UA certificates; needed when the source is secured
        self._client: Client | None = None
        self._nodes: dict[str, ua.NodeId] = {}

    async def _connected(self) -> Client:
        if self._client is not None:
            return self._client
        try:
            client = await connect_client(self.source, self.endpoint, self.pki_dir,
                                          timeout=self._timeout)
        except (OSError, TimeoutError, ua.UaError) as exc:  # connect() cleans up after itself
            raise ConnectionError(
                f"cannot connect to OPC-UA server {self.endpoint}: {exc!r}; check that it "
                "is reachable or set the source's endpoint"
            ) from exc
        self._client = client
        self._nodes = {}
        return client

    async def _node(self, client: Client, tag_path: str) -> Node:
        if tag_path not in self._nodes:
            info = self.catalog.info(tag_path)
            try:
                found, missing = await resolve_nodes(
                    client, self.source, self.endpoint, [(info.path, info.spec)])
            except CatalogError as exc:
                raise DeviceError(self.source.name, tag_path, str(exc)) from exc
            if info.path in missing:
                raise DeviceError(self.source.name, tag_path,
                                  f"OPC-UA server {self.endpoint}: {missing[info.path]}")
            self._nodes[tag_path] = found[info.path]
        return client.get_node(self._nodes[tag_path])

    async def write_and_read_back(self, tag_path: str, value: float) -> float:
        try:
            client = await self._connected()
            node = await self._node(client, tag_path)
            current = await node.read_data_value()
            await node.write_value(ua.DataValue(_variant_like(value, current.Value)))
            readback = await node.read_value()
        except OpcUaSecurityError as exc:  # refused before a session: nothing to close
            raise DeviceError(self.source.name, tag_path, str(exc)) from exc
        except ua.UaStatusCodeError as exc:  # the server answered: keep the session
            raise DeviceError(self.source.name, tag_path,
                              f"OPC-UA server {self.endpoint} refused: {exc}") from exc
        except (OSError, TimeoutError, ua.UaError) as exc:
            await self.close()
            raise DeviceError(self.source.name, tag_path,
                              f"OPC-UA server {self.endpoint}: {exc!r}") from exc
        if not isinstance(readback, int | float):  # a Boolean (a handshake strobe) is 0/1
            raise DeviceError(self.source.name, tag_path,
                              f"read back {readback!r}, not a number")
        return float(readback)

    async def read_value(self, tag_path: str) -> float:
        try:
            client = await self._connected()
            node = await self._node(client, tag_path)
            value = await node.read_value()
        except OpcUaSecurityError as exc:
            raise DeviceError(self.source.name, tag_path, str(exc)) from exc
        except ua.UaStatusCodeError as exc:
            raise DeviceError(self.source.name, tag_path,
                              f"OPC-UA server {self.endpoint} refused: {exc}") from exc
        except (OSError, TimeoutError, ua.UaError) as exc:
            await self.close()
            raise DeviceError(self.source.name, tag_path,
                              f"OPC-UA server {self.endpoint}: {exc!r}") from exc
        if isinstance(value, bool):
            return float(value)
        if not isinstance(value, int | float):
            raise DeviceError(self.source.name, tag_path, f"read {value!r}, not a number")
        return float(value)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_disconnect(client, self.endpoint)


_INTEGER_VARIANTS = frozenset({
    ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
    ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64,
})


def _variant_like(value: float, current: ua.Variant | None) -> ua.Variant:
    """``value`` in the variable's current data type: PLC setpoints are often Float or
    Int16, and a server refuses a Double written to them."""
    kind = current.VariantType if current is not None else ua.VariantType.Double
    if kind == ua.VariantType.Boolean:
        return ua.Variant(bool(value), kind)
    if kind in _INTEGER_VARIANTS:
        return ua.Variant(round(value), kind)
    if kind == ua.VariantType.Float:
        return ua.Variant(float(value), kind)
    return ua.Variant(float(value), ua.VariantType.Double)


async def _quietly_disconnect(client: Client, endpoint: str) -> None:
    try:
        await client.disconnect()
    except Exception as exc:  # the connection is gone already: nothing left to close
        logger.debug("closing OPC-UA client %s: %r", endpoint, exc)


class DevicePool:
    """One writer per source, created on first use; ``endpoints`` overrides the catalog's;
    ``pki_dir`` holds the OPC-UA certificates (a secured OPC-UA source needs it)."""

    def __init__(self, catalog: Catalog, endpoints: dict[str, str] | None = None,
                 pki_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.endpoints = dict(endpoints or {})
        self.pki_dir = pki_dir
        self._writers: dict[str, DeviceWriter] = {}

    def writer(self, info: TagInfo) -> DeviceWriter:
        src = info.source
        if src.name not in self._writers:
            endpoint = self.endpoints.get(src.name, src.endpoint)
            self._writers[src.name] = (
                OpcUaWriter(self.catalog, src, endpoint, pki_dir=self.pki_dir)
                if src.protocol == "opcua"
                else ModbusWriter(self.catalog, src, endpoint)
            )
        return self._writers[src.name]

    async def write_and_read_back(self, tag_path: str, value: float) -> float:
        info = self.catalog.info(tag_path)
        return await self.writer(info).write_and_read_back(info.path, value)

    async def read_value(self, tag_path: str) -> float:
        info = self.catalog.info(tag_path)
        return await self.writer(info).read_value(info.path)

    async def close(self) -> None:
        for writer in self._writers.values():
            await writer.close()
        self._writers.clear()
