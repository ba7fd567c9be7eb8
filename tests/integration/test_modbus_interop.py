"""A vendor map with mixed types and orders against a real pymodbus server, over Modbus TCP
and RTU over TCP: every value decoded as ``struct`` packed it (independently of our codec)."""

from __future__ import annotations

import asyncio
import struct
import textwrap
from pathlib import Path

import pytest
from pymodbus.framer import FramerType

from connectors.modbus import ModbusSource
from millstream.stack.kafka import free_port
from schemas.catalog import load_catalog
from schemas.readings import Quality
from tests.integration.modbus_servers import device, readings_of, run_source, serve, words
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

VENDOR_MAP = Path(__file__).resolve().parents[1] / "data" / "vendor_map.csv"
PUMP = "acme/plant9/pumps/line1/pump-01"

CATALOG = """\
enterprise: acme
site: plant9
sources:
  - {{name: plc, protocol: modbus, endpoint: "127.0.0.1:{port}", interval_ms: 100,
     framer: {framer}, timeout_ms: 500}}
machines:
  - name: pump-01
    area: pumps
    line: line1
    source: plc
    unit_id: 1
    register_map: {csv}
    tags:
      - {{name: energy, kind: counter, register: {{table: holding, address: 20, type: int64,
          order: CDAB}}}}
      - {{name: flow_total, register: {{table: input, address: 12, type: float64,
          order: DCBA}}}}
      - {{name: valve_open, kind: state, register: {{table: holding, address: 30,
          type: bit(3)}}}}
      - {{name: valve_fault, kind: state, register: {{table: holding, address: 30,
          type: bit(0)}}}}
      - {{name: suction_temp, unit: degC, register: {{table: input, address: 20,
          type: uint16, scale: 0.5, offset: -40}}}}
      - {{name: aux_pressure, unit: bar, register: {{table: input, address: 0, order: BADC,
          unit_id: 2}}}}
"""

# what the server holds, packed with struct: (tag, expected value, table, address, words)
ENERGY = -1_234_567_890_123
FLOW = 31_415.926535897932
EXPECTED: dict[str, float | str] = {
    "oil_temp": 48.25,  # vendor map: input 0, REAL, big
    "pressure": 187.5,  # input 2, real, word swap
    "stroke_counter": 305_419_896.0,  # input 4, UDINT, little
    "line_voltage": 230.1,  # input 8, INT, x0.1
    "pressure_sp": 160.0,  # holding 0, REAL
    "running": 1.0,  # discrete 0
    "recipe": "MIX-42",  # holding 10, string(8)
    "energy": float(ENERGY),
    "flow_total": FLOW,
    "valve_open": 1.0,
    "valve_fault": 0.0,
    "suction_temp": 110.0,  # raw 300 * 0.5 - 40
    "aux_pressure": 12.5,  # unit 2
}


def unit1() -> dict[str, dict[int, int]]:
    inputs: dict[int, int] = {}
    holding: dict[int, int] = {}
    for table, address, ws in (
        (inputs, 0, words(">f", 48.25)),
        (inputs, 2, words(">f", 187.5, "CDAB")),
        (inputs, 4, words(">I", 305_419_896, "DCBA")),
        (inputs, 8, words(">h", 2301)),
        (inputs, 12, words(">d", FLOW, "DCBA")),
        (inputs, 20, words(">H", 300)),
        (holding, 0, words(">f", 160.0)),
        (holding, 10, words(">8s", b"MIX-42")),
        (holding, 20, words(">q", ENERGY, "CDAB")),
        (holding, 30, [0b1010_1000]),  # bit 3 set, bit 0 clear
    ):
        table.update({address + i: w for i, w in enumerate(ws)})
    return {"inputs": inputs, "holding": holding}


@pytest.mark.parametrize("framer", ["tcp", "rtu"])
def test_vendor_map_decodes_every_type_and_order(framer: str, tmp_path: Path) -> None:
    assert struct.unpack(">I", bytes.fromhex("12345678"))[0] == 305_419_896
    port = free_port()
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(CATALOG).format(port=port, framer=framer, csv=VENDOR_MAP))
    catalog = load_catalog(path)
    pub = MemoryPublisher()

    async def go() -> dict[str, object]:
        images = unit1()
        server = await serve(
            [device(1, holding=images["holding"], inputs=images["inputs"], discrete={0: True}),
             device(2, inputs=dict(enumerate(words(">f", 12.5, "BADC"))))],
            port, framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET)
        try:
            source = ModbusSource(catalog, catalog.source("plc"), pub)
            status = await run_source(source, 1.5)
            assert source.devices[0].splits == 0
            assert len(source.links) == 1  # units 1 and 2 share the endpoint's connection
            assert {b.unit for b in source.devices[0].plan.blocks} == {1, 2}
            return status
        finally:
            await server.shutdown()

    status = asyncio.run(go())
    assert status["errors"] == 0, status["last_error"]
    readings = readings_of(pub)
    assert all(r.quality is Quality.GOOD for r in readings), [
        (r.tag, r.status) for r in readings if r.quality is not Quality.GOOD]
    last = {r.tag.removeprefix(f"{PUMP}/"): r for r in readings}
    assert set(last) == set(EXPECTED)
    for tag, want in EXPECTED.items():
        if isinstance(want, str):
            assert last[tag].text == want and last[tag].value is None
        else:
            assert last[tag].value == pytest.approx(want, rel=1e-6), tag
    assert last["flow_total"].value == FLOW  # float64 keeps every digit
    assert last["energy"].value == float(ENERGY)
