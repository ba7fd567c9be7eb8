"""Every connector against the real plant simulator and the real Kafka: nothing lost.

One contract suite over both protocols: run the connector for a few seconds, read the
readings topic back, and prove the frames decode, the sequence numbers are exactly
1..produced, every tag of the source arrived and Kafka confirmed every reading.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.run import run_connector
from connectors.simulator import PlantSimulator
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.readings import Quality, ReadingFrame
from schemas.status import read_status
from schemas.topics import Topics
from tests.support.kafka import consume_frames

pytestmark = pytest.mark.integration

SOURCES = ["opcua-sim", "modbus-sim"]


def endpoint_of(catalog: Catalog, source: str, sim: PlantSimulator) -> str:
    return sim.opcua_endpoint if catalog.source(source).protocol == "opcua" else sim.modbus_endpoint


def tags_of(catalog: Catalog, source: str) -> set[str]:
    return {catalog.tag_path(m, t) for m in catalog.machines_of(source) for t in m.tags}


async def wait_connected(status_file: Path, since: int, timeout: float
                         ) -> dict[str, Any] | None:
    """The first status written after ``since`` that says connected (the connector
    retries with backoff)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(status_file)
        if status is not None and status["connected"] and status["updated_at"] > since:
            return status
        await asyncio.sleep(0.2)
    return read_status(status_file)


def check_frames(frames: list[ReadingFrame], status: dict[str, Any]) -> None:
    """Exactly readings 1..produced of one (source, epoch), each once."""
    assert {(f.source, f.epoch) for f in frames} == {(status["source"], status["epoch"])}
    seqs = sorted(f.seq + i for f in frames for i in range(len(f)))
    assert seqs == list(range(1, status["produced"] + 1))
    assert status["delivered"] == status["produced"] > 0
    assert status["failed"] == 0
    assert status["frames"] == len(frames)


@pytest.mark.parametrize("source", SOURCES)
def test_connector_delivers_every_tag_without_gaps(
    source: str, catalog: Catalog, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(), seed=7)
    started = int(time.time() * 1000)

    async def go() -> dict[str, Any]:
        await sim.start()
        stop = asyncio.Event()
        task = asyncio.create_task(run_connector(
            catalog, source, bootstrap=kafka_bootstrap, topics=topics,
            endpoint=endpoint_of(catalog, source, sim), status_file=tmp_path / "status.json",
            frame_ms=100, stop=stop))

        try:
            await asyncio.sleep(3.0)
            stop.set()
            status = await task
            status["sim"] = {p: sim.value(p) for p in tags_of(catalog, source)}
            return status
        finally:
            stop.set()
            await sim.stop()

    status = asyncio.run(go())
    sim_values = status.pop("sim")
    ended = int(time.time() * 1000)

    assert read_status(tmp_path / "status.json") == status
    assert status["source"] == source and status["errors"] == 0, status["last_error"]
    frames = consume_frames(kafka_bootstrap, topics.readings, status["produced"])
    check_frames(frames, status)

    readings = [r for f in frames for r in f.readings()]
    assert {r.tag for r in readings} == tags_of(catalog, source)
    assert all(r.quality is Quality.GOOD and r.value is not None for r in readings)
    assert all(started - 60_000 <= r.ts <= ended + 1000 for r in readings)
    if catalog.source(source).protocol == "modbus":
        # every poll reads every tag: about 3 s / interval polls of 11 tags
        assert len(readings) >= 11 * 8 and len(readings) % 11 == 0
    last = {r.tag: r.value for r in sorted(readings, key=lambda r: r.seq)}
    for path, info in catalog.tags().items():
        if info.source.name == source and info.spec.kind == "setpoint":
            assert last[path] == pytest.approx(sim_values[path], rel=1e-6)


@pytest.mark.parametrize("source", SOURCES)
def test_connector_survives_the_device_going_away(
    source: str, catalog: Catalog, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """No server at first, then a server, then none, then a new one on the same ports:
    the connector keeps counting, reconnects, and its sequence numbers stay gap-free."""
    opcua_port, modbus_port = free_port(), free_port()

    def simulator() -> PlantSimulator:
        return PlantSimulator(catalog, opcua_port=opcua_port, modbus_port=modbus_port, seed=7)

    status_file = tmp_path / "status.json"
    marks: dict[str, int] = {}

    async def go() -> tuple[dict[str, Any], list[dict[str, Any] | None]]:
        probe = simulator()  # not started: it only names the endpoints
        stop = asyncio.Event()
        task = asyncio.create_task(run_connector(
            catalog, source, bootstrap=kafka_bootstrap, topics=topics,
            endpoint=endpoint_of(catalog, source, probe), status_file=status_file,
            frame_ms=100, stop=stop))
        seen: list[dict[str, Any] | None] = []
        try:
            await asyncio.sleep(1.5)  # nobody listening yet
            seen.append(read_status(status_file))
            for round_ in ("first", "second"):
                sim = simulator()
                await sim.start()
                marks[round_] = int(time.time() * 1000)
                seen.append(await wait_connected(status_file, marks[round_], timeout=30.0))
                await asyncio.sleep(1.5)
                await sim.stop()
                await asyncio.sleep(1.5)
            stop.set()
            return await task, seen
        finally:
            stop.set()

    status, seen = asyncio.run(go())
    before, up_first, up_second = seen
    assert before is not None and before["connected"] is False and before["errors"] >= 1
    assert "millstream simulate" in str(before["last_error"])
    assert up_first is not None and up_first["connected"] is True
    assert up_second is not None and up_second["connected"] is True
    assert status["errors"] >= 2 and status["connected"] is False

    frames = consume_frames(kafka_bootstrap, topics.readings, status["produced"])
    check_frames(frames, status)
    readings = [r for f in frames for r in f.readings()]
    tags = tags_of(catalog, source)
    for round_ in ("first", "second"):
        good = {r.tag for r in readings if r.ts >= marks[round_] - 1000 and r.value is not None}
        assert good == tags, f"{round_} server: missing {tags - good}"
    if catalog.source(source).protocol == "modbus":
        # while the device is away, each poll marks every tag BAD: a visible gap
        gaps = [r for r in readings if r.quality is Quality.BAD]
        assert {r.tag for r in gaps} == tags and all(r.value is None for r in gaps)
