"""The sources against the real plant simulator, Kafka left out: how they read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.base import Source
from connectors.modbus import ModbusSource
from connectors.opcua import OpcUaSource
from connectors.simulator import PlantSimulator
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.readings import Quality
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration


def serve_against_sim(catalog: Catalog, make: Any, seconds: float) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(), seed=7)
        await sim.start()
        try:
            source: Source = make(sim)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            return await source.serve(stop)
        finally:
            await sim.stop()

    return asyncio.run(go())


def test_opcua_subscribes_in_chunks(catalog: Catalog) -> None:
    pub = MemoryPublisher()
    made: list[OpcUaSource] = []

    def make(sim: PlantSimulator) -> OpcUaSource:
        spec = catalog.source("opcua-sim")
        made.append(OpcUaSource(catalog, spec, pub, endpoint=sim.opcua_endpoint, chunk=7))
        return made[0]

    status = serve_against_sim(catalog, make, 2.5)
    assert status["errors"] == 0, status["last_error"]
    source = made[0]
    readings = [r for f in pub.sent for r in f.readings()]
    assert {r.tag for r in readings} == set(source.tags)  # 20 tags over 3 subscriptions
    assert source.notifications == status["produced"] == len(readings)
    # pushed at the source's 100 ms: ~2 s of connected time gives several values a tag
    per_tag = len(readings) / len(source.tags)
    assert per_tag >= 5


def test_modbus_reads_blocks_not_registers(catalog: Catalog) -> None:
    pub = MemoryPublisher()
    made: list[ModbusSource] = []

    def make(sim: PlantSimulator) -> ModbusSource:
        spec = catalog.source("modbus-sim")
        made.append(ModbusSource(catalog, spec, pub, endpoint=sim.modbus_endpoint))
        return made[0]

    status = serve_against_sim(catalog, make, 2.0)
    source = made[0]
    assert status["errors"] == 0, status["last_error"]
    assert source.polls >= 5
    # input, holding and discrete: 3 reads for 11 tags (stop may cut the last poll short)
    assert 3 * (source.polls - 1) <= source.reads <= 3 * source.polls
    readings = [r for f in pub.sent for r in f.readings()]
    assert 11 * (source.polls - 1) <= len(readings) <= 11 * source.polls
    assert all(r.quality is Quality.GOOD for r in readings)
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))


def test_opcua_reconnect_marks_the_gap_and_resumes_every_tag(catalog: Catalog) -> None:
    """After a dropped session the server sends every tag's current value again. Each tag
    gets one gap marker, then its resent value: never published twice with the same
    timestamp, and a value unchanged over the gap (the setpoints) resumes after its
    marker. (Before gap markers, resent values were dropped as repeats.)"""
    pub = MemoryPublisher()
    made: list[OpcUaSource] = []
    drops: list[asyncio.Task[None]] = []

    async def drop() -> None:
        await asyncio.sleep(1.5)
        client = made[0].client
        assert client is not None and made[0].connected
        client.disconnect_socket()

    def make(sim: PlantSimulator) -> OpcUaSource:
        made.append(OpcUaSource(catalog, catalog.source("opcua-sim"), pub,
                                endpoint=sim.opcua_endpoint))
        drops.append(asyncio.create_task(drop()))
        return made[0]

    serve_against_sim(catalog, make, 4.5)
    source = made[0]
    assert drops[0].done() and drops[0].exception() is None
    assert source.reconnects >= 1 and source.errors >= 1
    readings = [r for f in pub.sent for r in f.readings()]
    keys = [(r.tag, r.ts, r.value) for r in readings]
    repeated = {k for k in keys if keys.count(k) > 1}
    assert not repeated, f"{len(repeated)} reading(s) published twice, e.g. {min(repeated)}"
    markers = [r for r in readings if r.status is not None and r.status.startswith("gap: ")]
    assert sorted(r.tag for r in markers) == sorted(source.tags)  # one per tag
    assert all(r.value is None and r.quality is Quality.BAD for r in markers)
    marker_of = {r.tag: r for r in markers}
    for tag in source.tags:
        after = [r for r in readings if r.tag == tag and r.seq > marker_of[tag].seq]
        assert after and after[0].ts > marker_of[tag].ts, tag  # data again, ordered by ts
    assert source.gaps.resumed >= 2  # at least the two setpoints came again unchanged
