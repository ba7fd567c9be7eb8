"""A Modbus source polls many devices, at most ``concurrency`` at a time, every one of them."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from connectors.modbus import ModbusSource
from millstream.stack.kafka import free_port
from schemas.catalog import load_catalog
from schemas.readings import Quality
from tests.integration.modbus_servers import device, readings_of, run_source, serve, words
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

DEVICES = 5
SLOW_S = 0.15  # each device takes this long to answer a read


def test_devices_are_polled_concurrently_within_the_bound(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(DEVICES)]
    machines = "".join(textwrap.dedent(f"""\
      - name: dev-{i}
        area: a
        line: l
        source: plc
        endpoint: "127.0.0.1:{port}"
        tags:
          - {{name: t, register: {{table: input, address: 0}}}}
    """) for i, port in enumerate(ports))
    path = tmp_path / "plant.yaml"
    path.write_text("enterprise: e\nsite: s\nsources:\n"
                    "  - {name: plc, protocol: modbus, endpoint: \"127.0.0.1:1\", "
                    "interval_ms: 100, concurrency: 2}\nmachines:\n"
                    + textwrap.indent(machines, ""))
    catalog = load_catalog(path)
    inflight = {"now": 0, "max": 0, "reads": 0}

    async def slow(_fc: int, _start: int, _address: int, _count: int, _regs: list[int],
                   _values: object) -> None:
        inflight["now"] += 1
        inflight["max"] = max(inflight["max"], inflight["now"])
        await asyncio.sleep(SLOW_S)
        inflight["now"] -= 1
        inflight["reads"] += 1
        return None

    async def go() -> MemoryPublisher:
        servers = [await serve([device(1, inputs=dict(enumerate(words(">f", float(i)))),
                                       action=slow)], port)
                   for i, port in enumerate(ports)]
        pub = MemoryPublisher()
        try:
            await run_source(ModbusSource(catalog, catalog.source("plc"), pub), 3.0)
        finally:
            for server in servers:
                await server.shutdown()
        return pub

    pub = asyncio.run(go())
    assert inflight["max"] == 2  # the bound is used, and never exceeded
    good = [r for r in readings_of(pub) if r.quality is Quality.GOOD]
    values = {r.tag.rsplit("/", 2)[1]: r.value for r in good}
    assert values == {f"dev-{i}": float(i) for i in range(DEVICES)}  # every device polled
    # serial polling could do at most 3 s / 0.15 s = 20 reads; two at a time does ~twice that
    assert inflight["reads"] > 25
