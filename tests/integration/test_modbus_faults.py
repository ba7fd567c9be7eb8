"""Bad devices against real pymodbus servers: a register refused inside a block, answers of
the wrong length, Inf/NaN registers, and a device that stops answering while others flow."""

from __future__ import annotations

import asyncio
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU

from connectors.modbus import ModbusSource
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog, load_catalog
from schemas.readings import Quality, Reading
from tests.integration.modbus_servers import device, readings_of, run_source, serve, words
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

LINE = "acme/plant9/press/line1"


def catalog_of(tmp_path: Path, ports: list[int]) -> Catalog:
    """good-01: five float32 at input 0..9 (4 refused, 6 Inf, 8 NaN); short-01: a 4-register
    read its server cuts short; dead-01: a unit id nobody answers for."""
    tags = "".join(f"      - {{name: t{a}, register: {{table: input, address: {a}}}}}\n"
                   for a in (0, 2, 4, 6, 8))
    text = textwrap.dedent(f"""\
    enterprise: acme
    site: plant9
    sources:
      - {{name: plc, protocol: modbus, endpoint: "127.0.0.1:{ports[0]}", interval_ms: 200,
         timeout_ms: 300}}
    machines:
      - name: good-01
        area: press
        line: line1
        source: plc
        poll_ms: 100
        tags:
    {{tags}}
      - name: short-01
        area: press
        line: line1
        source: plc
        endpoint: "127.0.0.1:{ports[1]}"
        tags:
          - {{name: a, register: {{table: holding, address: 0}}}}
          - {{name: b, register: {{table: holding, address: 2}}}}
      - name: dead-01
        area: press
        line: line1
        source: plc
        endpoint: "127.0.0.1:{ports[2]}"
        unit_id: 9
        tags:
          - {{name: x, register: {{table: input, address: 0}}}}
    """).replace("{tags}\n", tags)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return load_catalog(path)


def of(readings: list[Reading], machine: str, tag: str) -> list[Reading]:
    return [r for r in readings if r.tag == f"{LINE}/{machine}/{tag}"]


def test_bad_registers_are_isolated_and_bad_devices_do_not_stall_others(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    catalog = catalog_of(tmp_path, ports)
    pub = MemoryPublisher()
    refuse = {"on": True}
    inputs = {a + i: w for a, v in ((0, 1.5), (2, 2.5), (4, 4.5), (6, math.inf), (8, math.nan))
              for i, w in enumerate(words(">f", v))}

    async def refuse_4(fc: int, start: int, address: int, count: int, regs: list[int],
                       values: list[int] | list[bool] | None) -> ExcCodes | None:
        covers = address <= 4 < address + count
        return ExcCodes.ILLEGAL_ADDRESS if refuse["on"] and fc == 4 and covers else None

    async def hang(*_: Any) -> ExcCodes | None:  # a device that takes the request, then hangs
        await asyncio.sleep(60)
        return None

    def cut_short(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending and len(getattr(pdu, "registers", [])) == 4:
            pdu.registers = pdu.registers[:3]
        return pdu

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        servers = [
            await serve([device(1, inputs=inputs, action=refuse_4)], ports[0]),
            await serve([device(1, holding=dict(enumerate(words(">f", 7.0) * 2)))], ports[1],
                        trace_pdu=cut_short),
            await serve([device(9, action=hang)], ports[2]),
        ]
        source = ModbusSource(catalog, catalog.source("plc"), pub)
        try:
            good, _, dead = source.devices
            good.merge_after_s = 1.5
            loop = asyncio.get_running_loop()
            loop.call_later(2.5, refuse.update, {"on": False})  # register 4 comes back
            split: list[int] = []
            loop.call_later(2.0, lambda: split.append(len(good.parts)))
            status = await run_source(source, 6.5)
            stats = {"splits": good.splits, "split_parts": split[0], "parts": len(good.parts),
                     "polls": good.polls, "dead_polls": dead.polls, "dead_down": dead.down}
            return status, stats
        finally:
            for server in servers:
                await server.shutdown()

    status, stats = asyncio.run(go())
    readings = readings_of(pub)

    # the refused register is isolated: the block split in two, then the bad half again;
    # the split plan is kept while refused, and merged back once all answer for a while
    assert stats["splits"] == 2 and stats["split_parts"] == 3, stats
    assert stats["parts"] == 1, stats
    for tag, want in (("t0", 1.5), ("t2", 2.5)):
        values = of(readings, "good-01", tag)
        assert len(values) >= 0.7 * stats["polls"] and all(r.value == want for r in values)
    t4 = of(readings, "good-01", "t4")
    refused = [r for r in t4 if r.quality is Quality.BAD]
    assert refused and all("illegal data address (exception 2)" in str(r.status)
                           and "input registers 4..5, unit 1" in str(r.status) for r in refused)
    # retried with backoff while refused (0.5, 1, 2 s ...), not on every 100 ms poll
    assert 2 <= len(refused) <= 5, [r.status for r in refused]
    assert t4[-1].quality is Quality.GOOD and t4[-1].value == 4.5  # picked up again

    # Inf and NaN are BAD with the reason, never a value
    for tag, word in (("t6", "inf"), ("t8", "nan")):
        rs = of(readings, "good-01", tag)
        assert rs and all(r.quality is Quality.BAD and r.value is None for r in rs)
        assert f"holds {word} as float32" in str(rs[0].status)

    # a short answer is BAD with the reason
    short = of(readings, "short-01", "a")
    assert short and all(r.quality is Quality.BAD for r in short)
    assert "answered 3 register(s) instead of 4" in str(short[0].status)

    # the silent device: BAD with the reason, backed off, and nobody else waited for it
    dead = of(readings, "dead-01", "x")
    assert dead and all("no answer within the timeout" in str(r.status) for r in dead)
    assert stats["dead_down"] and stats["dead_polls"] <= 6, stats
    assert stats["polls"] >= 40, stats  # ~6.5 s at 100 ms: the good device kept its pace
    assert status["errors"] >= len(refused) + len(dead)


def test_a_device_that_comes_up_late_is_picked_up(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    catalog = catalog_of(tmp_path, ports)
    pub = MemoryPublisher()
    inputs = {a: w for a, w in enumerate(words(">f", 1.5) * 5)}

    async def go() -> dict[str, Any]:
        source = ModbusSource(catalog, catalog.source("plc"), pub)
        task = asyncio.create_task(run_source(source, 4.0))
        await asyncio.sleep(1.0)  # nobody listens yet
        assert not source.connected and source.devices[0].down
        server = await serve([device(1, inputs=inputs)], ports[0])
        try:
            return await task
        finally:
            await server.shutdown()

    status = asyncio.run(go())
    readings = of(readings_of(pub), "good-01", "t0")
    assert readings[0].quality is Quality.BAD and "millstream simulate" in str(readings[0].status)
    assert readings[-1].quality is Quality.GOOD and readings[-1].value == 1.5
    assert status["errors"] >= 1 and status["devices"] == 3
