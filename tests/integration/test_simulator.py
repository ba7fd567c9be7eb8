"""The plant simulator through real clients: asyncua over OPC-UA, pymodbus over Modbus TCP."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from asyncua import Client, Node, ua
from pymodbus.client import AsyncModbusTcpClient

from connectors.simulator import FaultPlan, PlantSimulator, PortInUseError, run_simulator
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.opcua_nodes import resolve_nodes

pytestmark = pytest.mark.integration

CNC = "acme/plant1/machining/line1/cnc-01"
PRESS = "acme/plant1/forming/line2/press-01"


def f32(words: Sequence[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def f32_words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


async def _nodes(client: Client, catalog: Catalog, endpoint: str) -> dict[str, ua.NodeId]:
    """Every OPC-UA tag's node, found the way the connector finds it (node or browse path)."""
    tags = [(p, i.spec) for p, i in catalog.tags().items() if i.source.protocol == "opcua"]
    found, missing = await resolve_nodes(client, catalog.source("opcua-sim"), endpoint, tags)
    assert not missing
    return found


async def _opcua(sim: PlantSimulator, catalog: Catalog) -> None:
    async with Client(sim.opcua_endpoint, timeout=10) as client:
        found = await _nodes(client, catalog, sim.opcua_endpoint)

        def node(path: str) -> Node:
            return client.get_node(found[path])

        for path, info in catalog.tags().items():
            if info.source.protocol != "opcua":
                continue
            dv = await node(path).read_data_value()
            assert dv.Value is not None, path
            want = ua.VariantType.Boolean if info.spec.kind == "state" else ua.VariantType.Double
            assert dv.Value.VariantType == want, path
        # values tick with source timestamps
        first = await node(f"{CNC}/spindle_temp").read_data_value()
        await asyncio.sleep(0.5)
        later = await node(f"{CNC}/spindle_temp").read_data_value()
        assert first.SourceTimestamp is not None and later.SourceTimestamp is not None
        assert later.SourceTimestamp > first.SourceTimestamp
        assert abs((datetime.now(UTC) - later.SourceTimestamp).total_seconds()) < 5
        assert later.Value is not None and 50 < later.Value.Value < 70
        # a setpoint is writable and the spindle follows it
        sp = node(f"{CNC}/spindle_speed_sp")
        await sp.write_value(ua.Variant(5000.0, ua.VariantType.Double))
        assert await sp.read_value() == 5000.0
        await asyncio.sleep(3.0)
        speed = await node(f"{CNC}/spindle_speed").read_value()
        assert speed < 6500
        assert sim.value(f"{CNC}/spindle_speed_sp") == 5000.0
        # anything else is read-only
        with pytest.raises(ua.UaStatusCodeError):
            await node(f"{CNC}/spindle_temp").write_value(ua.Variant(1.0, ua.VariantType.Double))


async def _modbus(sim: PlantSimulator) -> None:
    host, port = sim.modbus_endpoint.split(":")
    client = AsyncModbusTcpClient(host, port=int(port), timeout=5)
    assert await client.connect()
    try:
        ir = await client.read_input_registers(0, count=14, device_id=1)
        assert not ir.isError()
        assert 150 < f32(ir.registers[0:2]) < 220  # hydraulic_pressure
        assert 30 < f32(ir.registers[2:4]) < 65  # oil_temp
        assert (ir.registers[12] << 16 | ir.registers[13]) > 0  # stroke_count, uint32
        di = await client.read_discrete_inputs(0, count=2, device_id=1)
        assert di.bits[:2] == [True, False]  # running, no fault
        hr = await client.read_holding_registers(0, count=2, device_id=1)
        assert f32(hr.registers) == 200.0  # pressure_sp default
        # write the setpoint: read back, and the physics follows
        w = await client.write_registers(0, f32_words(150.0), device_id=1)
        assert not w.isError()
        hr = await client.read_holding_registers(0, count=2, device_id=1)
        assert f32(hr.registers) == 150.0
        await asyncio.sleep(4.0)
        assert sim.value(f"{PRESS}/pressure_sp") == 150.0
        ir = await client.read_input_registers(0, count=2, device_id=1)
        assert f32(ir.registers) < 160
        # registers that are not setpoints refuse writes
        bad = await client.write_registers(2, f32_words(1.0), device_id=1)
        assert bad.isError()
        # a unit id with no device answers with an exception, not silence
        assert (await client.read_input_registers(0, count=2, device_id=99)).isError()
    finally:
        client.close()


def test_simulator_serves_reads_and_takes_setpoints(catalog: Catalog) -> None:
    async def main() -> None:
        sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(),
                             faults=FaultPlan([]))
        async with sim:
            await asyncio.gather(_opcua(sim, catalog), _modbus(sim))
            assert sim.active_faults() == []

    asyncio.run(main())


def test_port_in_use_is_named(catalog: Catalog) -> None:
    async def main() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=taken)
            with pytest.raises(PortInUseError, match=f"127.0.0.1:{taken}.*in use"):
                await sim.start()
            sim = PlantSimulator(catalog, opcua_port=taken, modbus_port=free_port())
            with pytest.raises(PortInUseError, match="OPC-UA"):
                await sim.start()

    asyncio.run(main())


def test_run_simulator_serves_faults_until_stopped(catalog: Catalog) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        opcua_port = free_port()
        plan = FaultPlan.parse(["overheat@cnc-01:0.5+30"], catalog)
        task = asyncio.create_task(run_simulator(
            catalog, opcua_port=opcua_port, modbus_port=free_port(), seed=1, faults=plan,
            stop=stop,
        ))
        endpoint = f"opc.tcp://127.0.0.1:{opcua_port}/millstream/"
        client = Client(endpoint, timeout=10)
        for _ in range(100):  # until the server listens
            try:
                await client.connect()
                break
            except OSError:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.2)
        try:
            await asyncio.sleep(1.0)  # the fault starts at 0.5 s
            found = await _nodes(client, catalog, endpoint)
            fault = await client.get_node(found[f"{CNC}/fault"]).read_value()
            assert fault is True
        finally:
            await client.disconnect()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_a_forced_tag_is_served_at_once_and_held_until_released(catalog: Catalog) -> None:
    temp, oil = f"{CNC}/spindle_temp", f"{PRESS}/oil_temp"

    async def main() -> None:
        sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(),
                             faults=FaultPlan([]), tick_s=0.05)
        async with sim, Client(sim.opcua_endpoint, timeout=10) as client:
            node = client.get_node((await _nodes(client, catalog, sim.opcua_endpoint))[temp])
            host, port = sim.modbus_endpoint.split(":")
            modbus = AsyncModbusTcpClient(host, port=int(port), timeout=5)
            assert await modbus.connect()
            try:
                ts = await sim.force(temp, 123.5)
                await sim.force("press-01/oil_temp", 99.0)
                dv = await node.read_data_value()  # no tick in between: served at once
                assert dv.Value is not None and dv.Value.Value == 123.5
                assert dv.SourceTimestamp is not None
                assert int(dv.SourceTimestamp.timestamp() * 1000) == ts
                ir = await modbus.read_input_registers(2, count=2, device_id=1)
                assert f32(ir.registers) == 99.0
                await asyncio.sleep(0.3)  # ticks go by: still held
                assert await node.read_value() == 123.5 and sim.value(temp) == 123.5
                later = await sim.force(temp, None)
                assert later >= ts
                assert 50 < await node.read_value() < 70  # the physics again, at once
                await asyncio.sleep(0.2)
                assert 50 < sim.value(temp) < 70 and sim.value(oil) == 99.0
            finally:
                modbus.close()

    asyncio.run(main())
