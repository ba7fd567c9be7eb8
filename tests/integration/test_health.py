"""A connector's /readyz follows its device and Kafka, on the real simulator and Kafka.

Ready while both are there; 503 with the device's error when the simulator stops (alive all
the same), ready again when it is back; 503 naming the cluster when Kafka is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.run import run_connector
from connectors.simulator import FaultPlan, PlantSimulator
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.health import HealthConfig
from schemas.status import read_status
from schemas.topics import Topics
from tests.support.scrape import get, scrape, value

pytestmark = pytest.mark.integration

SOURCE = "modbus-sim"


async def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy answer (run in a thread: it makes HTTP calls)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(check)
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


def _url(status_file: Path) -> str | None:
    doc = read_status(status_file)
    return None if doc is None else doc.get("metrics_url")


def _readyz(url: str, code: int) -> dict[str, Any] | None:
    got, body = get(url + "/readyz")
    return body if got == code else None


def test_readiness_follows_the_device(catalog: Catalog, kafka_bootstrap: str, topics: Topics,
                                      tmp_path: Path) -> None:
    modbus_port, status_file = free_port(), tmp_path / "status.json"

    def simulator() -> PlantSimulator:
        return PlantSimulator(catalog, opcua_port=free_port(), modbus_port=modbus_port,
                              seed=3, faults=FaultPlan([]))

    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        sim = simulator()
        await sim.start()
        stop = asyncio.Event()
        task = asyncio.create_task(run_connector(
            catalog, SOURCE, bootstrap=kafka_bootstrap, topics=topics,
            endpoint=sim.modbus_endpoint, status_file=status_file, frame_ms=100, stop=stop,
            health=HealthConfig(port=0)))
        try:
            url = await _until(lambda: _url(status_file))
            assert url, "the connector never named its health endpoint"
            seen["ready"] = await _until(lambda: _readyz(url, 200))
            seen["before"] = await asyncio.to_thread(scrape, url)
            await sim.stop()
            seen["away"] = await _until(lambda: _readyz(url, 503))
            seen["alive"] = await asyncio.to_thread(get, url + "/healthz")
            seen["during"] = await asyncio.to_thread(scrape, url)
            sim = simulator()
            await sim.start()
            seen["back"] = await _until(lambda: _readyz(url, 200))
            seen["after"] = await asyncio.to_thread(scrape, url)
        finally:
            stop.set()
            await task
            await sim.stop()
        return seen

    seen = asyncio.run(go())
    assert seen["ready"] == {"stage": "connector", "ready": True,
                             "checks": {"stage": "ok", "dependency": "ok", "kafka": "ok"}}
    away = seen["away"]
    assert away is not None, "/readyz stayed 200 with the device gone"
    assert away["checks"]["kafka"] == "ok" and "cannot reach Modbus device" in away["reason"]
    assert f"127.0.0.1:{modbus_port}" in away["reason"]
    assert seen["alive"][0] == 200
    assert seen["back"] is not None, "/readyz did not come back with the device"
    src = {"stage": "connector", "source": SOURCE}
    b, d, a = seen["before"], seen["during"], seen["after"]
    assert value(b, "millstream_connector_connected", **src) == 1
    assert value(d, "millstream_connector_connected", **src) == 0
    assert value(d, "millstream_errors_total", kind="device", **src) > value(
        b, "millstream_errors_total", kind="device", **src)
    assert value(a, "millstream_readings_out_total", **src) > value(
        b, "millstream_readings_out_total", **src)
    assert value(a, "millstream_frame_readings_count", **src) > 0


def test_readiness_names_kafka_when_it_is_away(catalog: Catalog, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nobody listens there
    status_file = tmp_path / "status.json"

    async def go() -> tuple[dict[str, Any] | None, int]:
        sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(), seed=3,
                             faults=FaultPlan([]))
        await sim.start()
        stop = asyncio.Event()
        task = asyncio.create_task(run_connector(
            catalog, SOURCE, bootstrap=dead, topics=Topics("health"),
            endpoint=sim.modbus_endpoint, status_file=status_file, frame_ms=100, stop=stop,
            health=HealthConfig(port=0)))
        try:
            url = await _until(lambda: _url(status_file))
            assert url
            body = await _until(lambda: _readyz(url, 503))
            alive = (await asyncio.to_thread(get, url + "/healthz"))[0]
        finally:
            stop.set()
            await task
            await sim.stop()
        return body, alive

    body, alive = asyncio.run(go())
    assert body is not None and alive == 200
    assert body["checks"]["dependency"] == "ok"  # the device is there
    assert body["checks"]["kafka"].startswith(f"Kafka at {dead} did not answer")
