"""Device writers against a real asyncua server and a real pymodbus server, in-process.

These are minimal servers holding only the two setpoints, so the writers' wire format and
reconnection are tested on their own; the full path runs against the plant simulator in
``test_executor.py``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from asyncua import Server, ua
from asyncua.common.node import Node
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from millstream.stack.kafka import free_port
from schemas.catalog import Catalog, load_catalog
from schemas.opcua import parse_node_ref
from sinks.devices import DeviceError, DevicePool
from tests.integration.modbus_servers import device, serve, words

pytestmark = pytest.mark.integration

CNC_SP = "acme/plant1/machining/line1/cnc-01/spindle_speed_sp"
PRESS_SP = "acme/plant1/forming/line2/press-01/pressure_sp"  # holding 0, float32, unit 1


async def opcua_server(port: int, uri: str = "urn:millstream:plant",
                       kind: ua.VariantType = ua.VariantType.Double) -> tuple[Server, Node]:
    """A server with the CNC setpoint at the node id the catalog gives it."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/millstream/")
    idx = await server.register_namespace(uri)
    ident = parse_node_ref(str(load_catalog().info(CNC_SP).spec.node)).identifier
    node = await server.nodes.objects.add_variable(
        ua.NodeId(ua.String(ident), ua.Int16(idx)), "spindle_speed_sp", ua.Variant(8000, kind))
    await node.set_writable()
    await server.start()
    return server, node


async def modbus_server(port: int) -> ModbusTcpServer:
    device = SimDevice(id=1, simdata=[SimData(0, count=16, values=0, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server


def run(catalog: Catalog, test: Callable[[Catalog], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(catalog), timeout=60))


def test_opcua_write_reads_back_and_reconnects(catalog: Catalog) -> None:
    async def test(catalog: Catalog) -> None:
        port = free_port()
        server, node = await opcua_server(port)
        pool = DevicePool(catalog, {"opcua-sim": f"opc.tcp://127.0.0.1:{port}/millstream/"})
        try:
            assert await pool.write_and_read_back(CNC_SP, 5000.0) == 5000.0
            assert await node.read_value() == 5000.0
            variant = (await node.read_data_value()).Value
            assert variant is not None and variant.VariantType == ua.VariantType.Double
            await server.stop()
            with pytest.raises(DeviceError, match="opcua-sim"):
                await pool.write_and_read_back(CNC_SP, 6000.0)
            server, node = await opcua_server(port)  # the device comes back
            assert await pool.write_and_read_back(CNC_SP, 6500.5) == 6500.5
            assert await node.read_value() == 6500.5
        finally:
            await pool.close()
            await server.stop()

    run(catalog, test)


@pytest.mark.parametrize("kind", [ua.VariantType.Float, ua.VariantType.Int32])
def test_opcua_write_keeps_the_variables_data_type(catalog: Catalog, kind: ua.VariantType) -> None:
    """PLC setpoints are often Float or Int32: a Double written to them is refused."""
    async def test(catalog: Catalog) -> None:
        port = free_port()
        server, node = await opcua_server(port, kind=kind)
        pool = DevicePool(catalog, {"opcua-sim": f"opc.tcp://127.0.0.1:{port}/millstream/"})
        try:
            assert await pool.write_and_read_back(CNC_SP, 5000.0) == 5000.0
            variant = (await node.read_data_value()).Value
            assert variant is not None and variant.VariantType == kind
        finally:
            await pool.close()
            await server.stop()

    run(catalog, test)


def test_opcua_unknown_namespace_names_it(catalog: Catalog) -> None:
    async def test(catalog: Catalog) -> None:
        port = free_port()
        server, _ = await opcua_server(port, uri="urn:someone-else")
        pool = DevicePool(catalog, {"opcua-sim": f"opc.tcp://127.0.0.1:{port}/millstream/"})
        try:
            with pytest.raises(DeviceError, match="urn:millstream:plant"):
                await pool.write_and_read_back(CNC_SP, 5000.0)
        finally:
            await pool.close()
            await server.stop()

    run(catalog, test)


def test_modbus_float32_high_word_first_and_reconnects(catalog: Catalog) -> None:
    async def test(catalog: Catalog) -> None:
        port = free_port()
        server = await modbus_server(port)
        pool = DevicePool(catalog, {"modbus-sim": f"127.0.0.1:{port}"})
        reader = AsyncModbusTcpClient("127.0.0.1", port=port)
        try:
            assert await pool.write_and_read_back(PRESS_SP, 160.5) == 160.5
            await reader.connect()
            rr = await reader.read_holding_registers(0, count=2, device_id=1)
            assert rr.registers == list(struct.unpack(">HH", struct.pack(">f", 160.5)))
            reader.close()
            await server.shutdown()
            with pytest.raises(DeviceError, match="modbus-sim"):
                await pool.write_and_read_back(PRESS_SP, 170.0)
            server = await modbus_server(port)
            assert await pool.write_and_read_back(PRESS_SP, 170.25) == 170.25
        finally:
            reader.close()
            await pool.close()
            await server.shutdown()

    run(catalog, test)


def test_unreachable_device_fails_fast_with_the_endpoint(catalog: Catalog) -> None:
    async def test(catalog: Catalog) -> None:
        port = free_port()  # nothing listens here
        pool = DevicePool(catalog, {"modbus-sim": f"127.0.0.1:{port}"})
        try:
            with pytest.raises(DeviceError, match=f"127.0.0.1:{port}"):
                await pool.write_and_read_back(PRESS_SP, 160.0)
        finally:
            await pool.close()

    run(catalog, test)


WRITES_CATALOG = """\
enterprise: acme
site: plant9
sources:
  - {{name: plc, protocol: modbus, endpoint: "127.0.0.1:{nowhere}", timeout_ms: 500}}
machines:
  - name: oven-01
    area: bake
    line: line1
    source: plc
    endpoint: "127.0.0.1:{port}"
    unit_id: 1
    tags:
      - {{name: temp_sp, kind: setpoint, min: 0, max: 300, register: {{table: holding,
          address: 0, type: int16, scale: 0.1, order: BADC}}}}
      - {{name: speed_sp, kind: setpoint, min: 0, max: 100, register: {{table: holding,
          address: 2, type: float32, order: CDAB}}}}
      - {{name: heater_on, kind: setpoint, min: 0, max: 1, register: {{table: holding,
          address: 10, type: bit(5)}}}}
      - {{name: flow_sp, kind: setpoint, min: 0, max: 1000, register: {{table: holding,
          address: 20, type: float64, order: DCBA, unit_id: 2}}}}
"""


def test_modbus_writes_use_the_codec_the_machines_endpoint_and_unit(tmp_path: Path) -> None:
    """Types, orders, scale, a per-register unit id, the machine's own endpoint (the
    source's is dead) and a bit written by read-modify-write, all read back."""
    async def test() -> None:
        port = free_port()
        path = tmp_path / "plant.yaml"
        path.write_text(WRITES_CATALOG.format(port=port, nowhere=free_port()))
        catalog = load_catalog(path)
        server = await serve([device(1, holding={10: 0b1000_0001}), device(2)], port)
        pool = DevicePool(catalog)
        reader = AsyncModbusTcpClient("127.0.0.1", port=port)
        oven = "oven-01"
        try:
            assert await pool.write_and_read_back(f"{oven}/temp_sp", 215.3) == pytest.approx(
                215.3)
            assert await pool.write_and_read_back(f"{oven}/speed_sp", 42.5) == 42.5
            assert await pool.write_and_read_back(f"{oven}/heater_on", 1.0) == 1.0
            assert await pool.write_and_read_back(f"{oven}/flow_sp", 812.125) == 812.125
            await reader.connect()
            unit1 = (await reader.read_holding_registers(0, count=11, device_id=1)).registers
            unit2 = (await reader.read_holding_registers(20, count=4, device_id=2)).registers
            assert unit1[0:1] == words(">h", 2153, "BADC")
            assert unit1[2:4] == words(">f", 42.5, "CDAB")
            assert unit1[10] == 0b1010_0001  # bit 5 set, bits 0 and 7 kept
            assert unit2 == words(">d", 812.125, "DCBA")
            assert await pool.write_and_read_back(f"{oven}/heater_on", 0.0) == 0.0
            bits = (await reader.read_holding_registers(10, count=1, device_id=1)).registers
            assert bits == [0b1000_0001]
            with pytest.raises(DeviceError, match="does not fit a int16"):
                await pool.write_and_read_back(f"{oven}/temp_sp", 4000.0)
        finally:
            reader.close()
            await pool.close()
            await server.shutdown()

    asyncio.run(asyncio.wait_for(test(), timeout=60))
