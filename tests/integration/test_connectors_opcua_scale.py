"""Thousands of OPC-UA tags changing every second: every change the server made arrives."""

from __future__ import annotations

import asyncio
import logging
import resource
import time

import pytest

from connectors.opcua import OpcUaSource
from millstream.stack.kafka import free_port
from tests.integration.test_connectors_opcua_recovery import catalog_for
from tests.support.opcua_counting import CountingServer
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

TAGS = 2000
PERIOD_S = 0.75  # each tag changes ~1.3 times a second
WRITE_S = 10.0


def test_opcua_2000_tags_at_1hz_lose_nothing() -> None:
    server = CountingServer(free_port(), TAGS, period_s=PERIOD_S)
    catalog = catalog_for(server, server.endpoint, interval_ms=200)
    pub = MemoryPublisher()
    made: list[OpcUaSource] = []
    timing: dict[str, float] = {}

    async def go() -> None:
        await server.start(write=False)
        try:
            source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=200)
            made.append(source)
            stop = asyncio.Event()
            task = asyncio.create_task(source.serve(stop))
            while source.builder.produced + source.builder.pending < TAGS:  # initial values
                await asyncio.sleep(0.1)
            await server.start_writing()
            cpu0, t0 = time.process_time(), time.monotonic()
            await asyncio.sleep(WRITE_S)
            await server.stop_writing()
            timing["cpu"], timing["wall"] = time.process_time() - cpu0, time.monotonic() - t0
            deadline = time.monotonic() + 5.0
            while (source.builder.produced + source.builder.pending < TAGS + server.writes
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.1)
            timing["drain"] = time.monotonic() - t0 - timing["wall"]
            stop.set()
            await task
        finally:
            await server.stop()

    asyncio.run(go())
    source = made[0]
    readings = [r for f in pub.sent for r in f.readings()]
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
    got: dict[str, list[float]] = {}
    for r in readings:
        got.setdefault(r.tag.rsplit("/", 1)[1], []).append(r.value)  # type: ignore[arg-type]
    lost = {n: len(w) - len(got[n]) + 1 for n, w in server.written.items()
            if got.get(n, [])[1:] != w}
    rate = server.writes / timing["wall"]
    logger.info("%d tags: %d changes in %.1f s (%.0f/s), %d readings, lost %d; CPU %.1f s "
                   "(server and connector in one process), drained %.1f s after the last "
                   "write; max RSS %d MB", TAGS, server.writes, timing["wall"], rate,
                   len(readings), sum(lost.values()), timing["cpu"], timing["drain"],
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    assert not lost, f"{len(lost)} tag(s) lost changes, e.g. {next(iter(lost.items()))}"
    assert rate >= TAGS / PERIOD_S * 0.9  # the server really wrote ~1.3 changes/tag/s
    assert len(readings) == TAGS + server.writes and source.errors == 0
    assert all(v[0] == 0.0 for v in got.values())  # each tag's initial value first
