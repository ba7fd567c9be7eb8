"""The OPC-UA connector heals itself: a server restart and a network drop, against real
asyncua servers, with gap markers in the data and every later change delivered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.opcua import OpcUaSource
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.readings import Quality, Reading, ReadingFrame
from tests.support.opcua_counting import CountingServer
from tests.support.tcp_proxy import TcpProxy
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

OUTAGE_S = 3.0


class TimedPublisher(MemoryPublisher):
    """Remembers when each frame left the connector (Unix ms)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[int] = []

    def publish(self, frame: ReadingFrame) -> None:
        super().publish(frame)
        self.sent_at.append(int(time.time() * 1000))


def catalog_for(server: CountingServer, endpoint: str, interval_ms: int = 100) -> Catalog:
    return Catalog.model_validate({
        "enterprise": "e", "site": "s",
        "sources": [{"name": "plc", "protocol": "opcua", "endpoint": endpoint,
                     "interval_ms": interval_ms}],
        "machines": [{"name": "m", "area": "a", "line": "l", "source": "plc", "tags": [
            {"name": n, "node": server.node(n)} for n in server.names + server.constants]}],
    })


@dataclass
class Outage:
    """What happened when, in Unix ms, and what came out."""

    down_at: int = 0
    up_at: int = 0
    readings: list[Reading] = field(default_factory=list)
    sent_at: dict[int, int] = field(default_factory=dict)  # seq -> when its frame left
    source: Any = None
    second: CountingServer | None = None


def run_outage(kind: str) -> Outage:
    """Serve a connector against a CountingServer; take the server away for OUTAGE_S by
    ``kind`` (restart: stop it and start a new one on the same port; cut / silent: cut
    the TCP proxy in between, closing or hanging the connections), then run on."""
    port = free_port()
    proxy = TcpProxy("127.0.0.1", port, free_port()) if kind != "restart" else None
    first = CountingServer(port, 10, constant=2, period_s=0.2)
    endpoint = first.endpoint.replace(str(port), str(proxy.listen_port)) if proxy else (
        first.endpoint)
    catalog = catalog_for(first, endpoint)
    pub = TimedPublisher()
    out = Outage()

    async def go() -> None:
        await first.start()
        if proxy is not None:
            await proxy.start()
        source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=50)
        out.source = source
        stop = asyncio.Event()
        task = asyncio.create_task(source.serve(stop))
        server = first
        try:
            await asyncio.sleep(2.0)
            out.down_at = int(time.time() * 1000)
            if proxy is None:
                await first.stop()
            else:
                await proxy.cut(silent=kind == "silent")
            await asyncio.sleep(OUTAGE_S)
            if proxy is None:
                server = out.second = CountingServer(port, 10, constant=2, period_s=0.2,
                                                     first=first.value)
                await server.start()
            else:
                await proxy.restore()
            out.up_at = int(time.time() * 1000)
            await asyncio.sleep(5.5)
            stop.set()
            await task
        finally:
            stop.set()
            await server.stop()
            if proxy is not None:
                await proxy.stop()

    asyncio.run(go())
    for frame, at in zip(pub.sent, pub.sent_at, strict=True):
        for i in range(len(frame)):
            out.sent_at[frame.seq + i] = at
    out.readings = [r for f in pub.sent for r in f.readings()]
    if out.second is None:
        out.second = first  # the same server went on writing
    return out


@pytest.mark.parametrize("kind", ["restart", "cut", "silent"])
def test_opcua_outage_is_marked_and_data_flows_again(kind: str) -> None:
    out = run_outage(kind)
    source, readings = out.source, out.readings
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))  # no seq gaps
    assert source.reconnects >= 1
    markers = [r for r in readings if r.status and r.status.startswith("gap: ")]
    # one marker per tag, stamped when the loss was detected (the socket closing at once;
    # a hanging connection by the keepalive probe within ~4 s), naming the endpoint
    assert sorted(r.tag for r in markers) == sorted(source.tags)
    detect_ms = 4600 if kind == "silent" else 1000  # keepalive: a probe every 2 s
    for m in markers:
        assert m.value is None and m.quality is Quality.BAD
        assert m.status == f"gap: connection lost to {source.endpoint}"
        assert out.down_at - 50 <= m.ts <= out.down_at + detect_ms, (m.ts - out.down_at)
    for tag in source.tags:
        mine = [r for r in readings if r.tag == tag]
        marker = next(r for r in mine if r in markers)
        before = [r for r in mine if r.seq < marker.seq]
        after = [r for r in mine if r.seq > marker.seq]
        assert before and after, tag
        # ordered by ts: values, marker, then values again (resumed or new)
        assert max(r.ts for r in before) < marker.ts < min(r.ts for r in after), tag
        assert all(r.quality is Quality.GOOD and r.value is not None for r in before + after)
        # data again within 5 s of the server coming back
        assert out.sent_at[after[0].seq] - out.up_at <= 5000, tag
        if tag.endswith(("c0000", "c0001")) and kind != "restart":
            # unchanged over the gap (a restarted server stamps it anew): resumes at
            # marker + 1 ms, with its original source timestamp in the status
            assert after[0].ts == marker.ts + 1 and after[0].value == 42.0
            assert after[0].status is not None
            assert after[0].status.startswith("resumed after gap; source ts ")
            assert int(after[0].status.rsplit(" ", 1)[1]) <= marker.ts
    # every change the server made after the outage arrived, in order, none twice
    assert out.second is not None
    for name, written in out.second.written.items():
        got = [r.value for r in readings if r.tag.endswith(name) and r.seq > markers[0].seq
               and r.value is not None]
        assert got == sorted(set(got)), name
        if got and written and got[0] == written[0] - 1:
            got = got[1:]  # the value a restarted server starts from: not one of its changes
        later = [v for v in written if got and got[0] <= v <= got[-1]]
        assert later == got, f"{name}: {len(later) - len(got)} change(s) lost"
        assert len(got) >= 12, name  # 5.5 s at 5 Hz, less up to 2 s of backoff


def test_opcua_stop_emits_no_markers() -> None:
    port = free_port()
    server = CountingServer(port, 3, period_s=0.2)
    catalog = catalog_for(server, server.endpoint)
    pub = MemoryPublisher()

    async def go() -> None:
        await server.start()
        try:
            source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=50)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.5, stop.set)
            await source.serve(stop)
        finally:
            await server.stop()

    asyncio.run(go())
    readings = [r for f in pub.sent for r in f.readings()]
    assert len(readings) >= 9 and all(r.status is None for r in readings)


def test_a_full_spool_under_policy_block_pauses_publishing() -> None:
    """While the publisher says it is blocked (a full spool, policy block), the server's
    subscriptions stop publishing: no reading piles up in the connector's memory."""
    port = free_port()
    server = CountingServer(port, 5, period_s=0.1)
    pub = TimedPublisher()
    blocked_at = released_at = 0

    async def go() -> None:
        nonlocal blocked_at, released_at
        await server.start()
        catalog = catalog_for(server, server.endpoint)
        source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=50)
        stop = asyncio.Event()
        task = asyncio.create_task(source.serve(stop))
        try:
            await asyncio.sleep(1.5)
            pub.blocked = True  # type: ignore[attr-defined]
            blocked_at = int(time.time() * 1000)
            await asyncio.sleep(2.0)
            pub.blocked = False  # type: ignore[attr-defined]
            released_at = int(time.time() * 1000)
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(go())
    during = [at for at in pub.sent_at if blocked_at + 500 < at < released_at]
    after = [at for at in pub.sent_at if at > released_at]
    before = [at for at in pub.sent_at if at < blocked_at]
    assert before and after  # it published before and again after the pause
    assert during == []  # nothing while blocked (after the pause took effect)
