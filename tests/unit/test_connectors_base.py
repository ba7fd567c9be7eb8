"""The Source base class and the OPC-UA value mapping, without a network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from asyncua import Node, ua
from asyncua.common.subscription import (
    DataChangeEvent,
    DataChangeNotif,
    Subscription,
    SubscriptionItemData,
)

from connectors.base import Source
from connectors.exceptions import ConnectorConfigError
from connectors.opcua import OpcUaSource
from connectors.opcua_values import quality_of, to_unix_ms
from connectors.publisher import ReadingPublisher
from schemas.catalog import load_catalog
from schemas.readings import Quality, ReadingFrame
from schemas.status import read_status
from schemas.topics import Topics

STATUS_KEYS = {"source", "protocol", "epoch", "produced", "delivered", "failed", "frames",
               "connected", "running", "errors", "last_error", "updated_at"}


class MemoryPublisher:
    """Delivers every frame at once: the base's side of the contract, without Kafka."""

    def __init__(self) -> None:
        self.sent: list[ReadingFrame] = []
        self.delivered = self.failed = self.frames = 0
        self.last_error: str | None = None
        self.flushed = 0
        self.closed = False

    def publish(self, frame: ReadingFrame) -> None:
        ReadingFrame.decode(frame.encode())  # frames must survive the wire
        self.sent.append(frame)
        self.frames += 1
        self.delivered += len(frame)

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def flush(self, timeout: float = 10.0) -> int:
        self.flushed += 1
        return 0

    def close(self) -> None:
        self.closed = True


class Counter(Source):
    """Emits ``n`` readings of two tags, one every ``period`` s, then idles."""

    protocol = "test"

    def __init__(self, pub: MemoryPublisher, n: int, period: float = 0.0, **kw: Any) -> None:
        super().__init__("counter", pub, **kw)
        self.n, self.period = n, period

    async def run(self) -> None:
        self.connected = True
        for i in range(self.n):
            self.emit("a/b" if i % 2 else "a/c", 1_700_000_000_000 + i, float(i))
            if self.period:
                await asyncio.sleep(self.period)
        self.emit("a/bad", 1_700_000_000_000, None, Quality.GOOD)
        await asyncio.Event().wait()


async def _serve_for(source: Source, seconds: float) -> dict:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await source.serve(stop)


def test_frames_number_readings_without_gaps(tmp_path: Path) -> None:
    pub = MemoryPublisher()
    src = Counter(pub, n=2500, max_readings=1000, frame_ms=50, status_file=tmp_path / "s.json")
    status = asyncio.run(_serve_for(src, 0.3))
    seqs = [f.seq + i for f in pub.sent for i in range(len(f))]
    assert seqs == list(range(1, 2502))
    assert all(f.source == "counter" and f.epoch == src.epoch for f in pub.sent)
    assert max(len(f) for f in pub.sent) == 1000
    last = pub.sent[-1]
    assert last.tag[-1] == "a/bad" and last.value[-1] is None
    assert last.quality[-1] == Quality.BAD  # no value is never GOOD
    assert pub.flushed == 1 and pub.closed
    assert set(status) == STATUS_KEYS
    assert status["produced"] == status["delivered"] == 2501
    assert status["frames"] == len(pub.sent) and status["connected"] is False
    assert status["protocol"] == "test" and status["errors"] == 0
    assert read_status(tmp_path / "s.json") == status


def test_timer_flushes_partial_frames_and_status_is_rewritten(tmp_path: Path) -> None:
    pub = MemoryPublisher()
    src = Counter(pub, n=40, period=0.03, frame_ms=100, status_file=tmp_path / "s.json")

    async def go() -> tuple[dict, dict | None]:
        stop = asyncio.Event()
        task = asyncio.create_task(src.serve(stop))
        await asyncio.sleep(1.3)
        mid = read_status(tmp_path / "s.json")
        for _ in range(100):  # a loaded machine may take longer than 40 x 30 ms
            if src.builder.produced + src.builder.pending == 41:
                break
            await asyncio.sleep(0.05)
        stop.set()
        return await task, mid

    final, mid = asyncio.run(go())
    assert mid is not None and mid["connected"] is True and 0 < mid["produced"] < 41
    assert len(pub.sent) >= 5  # ~12 frames of ~3 readings
    assert final["produced"] == 41 and final["updated_at"] >= mid["updated_at"]


class Timed(MemoryPublisher):
    """Records the event loop's time of every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def publish(self, frame: ReadingFrame) -> None:
        super().publish(frame)
        self.at.append(asyncio.get_running_loop().time())


class Bursts(Source):
    """Emits ``bursts`` bursts of ``size`` readings (no await inside a burst), ``gap`` s
    apart, recording when each burst ended."""

    protocol = "test"

    def __init__(self, pub: MemoryPublisher, bursts: int, size: int, gap: float,
                 **kw: Any) -> None:
        super().__init__("bursts", pub, **kw)
        self.bursts, self.size, self.gap = bursts, size, gap
        self.ended: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for b in range(self.bursts):
            for i in range(self.size):
                self.emit(f"a/t{i % 7}", 1_700_000_000_000 + b * 1000 + i, float(i))
            self.ended.append(loop.time())
            await asyncio.sleep(self.gap)
        await asyncio.Event().wait()


def test_a_frame_goes_once_its_burst_is_over_not_after_frame_ms() -> None:
    pub = Timed()
    src = Bursts(pub, bursts=5, size=30, gap=0.3, frame_ms=5000, frame_idle_ms=5)
    asyncio.run(_serve_for(src, 1.8))
    assert [len(f) for f in pub.sent] == [30] * 5  # one frame per burst, none per reading
    waits = [at - end for at, end in zip(pub.at, src.ended, strict=True)]
    # ~5 ms each; frame_ms (5 s) would be 1000 times that. Generous for a loaded machine.
    assert all(0.004 <= w < 0.25 for w in waits), waits


def test_a_steady_trickle_is_framed_by_frame_ms_and_idle_flush_can_be_turned_off() -> None:
    pub = Timed()
    src = Counter(pub, n=150, period=0.002, frame_ms=100, frame_idle_ms=50)
    asyncio.run(_serve_for(src, 0.9))
    # a reading every ~2 ms never leaves the frame idle for 50 ms: frame_ms bounds it
    assert sum(len(f) for f in pub.sent) == 151
    assert 2 <= len(pub.sent) <= 20
    off = Timed()
    asyncio.run(_serve_for(Bursts(off, bursts=1, size=3, gap=0, frame_ms=400,
                                  frame_idle_ms=0), 0.9))
    assert [len(f) for f in off.sent] == [3]  # sent by the frame_ms timer, not at once
    with pytest.raises(ValueError, match="frame_idle_ms"):
        Counter(MemoryPublisher(), n=0, frame_idle_ms=-1)


def test_errors_from_run_propagate_after_cleanup() -> None:
    class Broken(Source):
        protocol = "test"
        cleaned = False

        async def run(self) -> None:
            self.emit("x/y", 1, 1.0)
            raise ConnectorConfigError("no such namespace")

        async def cleanup(self) -> None:
            Broken.cleaned = True

    pub = MemoryPublisher()
    with pytest.raises(ConnectorConfigError, match="namespace"):
        asyncio.run(Broken("broken", pub).serve(asyncio.Event()))
    assert Broken.cleaned and pub.delivered == 1  # what was read still went out


def test_record_error_shows_in_status() -> None:
    src = Counter(MemoryPublisher(), n=0)
    src.record_error("cannot reach X: start it")
    src.record_error("cannot reach X: start it")
    assert src.status()["errors"] == 2 and src.status()["last_error"] == "cannot reach X: start it"


def code(value: int) -> ua.StatusCode:
    return ua.StatusCode(cast(ua.UInt32, value))


def stamp(dt: datetime) -> ua.DateTime:
    return cast(ua.DateTime, dt)


def test_opcua_quality_from_status_severity() -> None:
    assert quality_of(None) is Quality.GOOD
    assert quality_of(code(ua.StatusCodes.Good)) is Quality.GOOD
    assert quality_of(code(ua.StatusCodes.UncertainLastUsableValue)) is Quality.UNCERTAIN
    assert quality_of(code(ua.StatusCodes.BadCommunicationError)) is Quality.BAD
    assert quality_of(0xC0000000) is Quality.BAD


def test_opcua_timestamps_and_values() -> None:
    t = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    ms = 1735787045678
    assert to_unix_ms(t) == ms
    assert to_unix_ms(t.replace(tzinfo=None)) == ms  # naive means UTC
    assert to_unix_ms(t.astimezone(timezone(timedelta(hours=2)))) == ms
    # the value mapping itself is tested in test_connectors_opcua_values.py


def test_publisher_counts_what_it_could_not_deliver() -> None:
    pub = ReadingPublisher("127.0.0.1:1", Topics("unit"),
                           kafka_config={"message.timeout.ms": "300"})
    frame = ReadingFrame("s", 1, 1, ["t"], [1], [1.0], [0])
    pub.publish(frame)
    assert pub.produced == 1 and pub.frames == 1
    pub.flush(3.0)
    assert pub.delivered == 0 and pub.failed == 1
    assert "unit.readings" in str(pub.last_delivery_error)


def test_publisher_close_counts_the_undelivered_as_failed() -> None:
    pub = ReadingPublisher("127.0.0.1:1", Topics("unit"))
    pub.publish(ReadingFrame("s", 1, 1, ["t", "u"], [1, 1], [1.0, 2.0], [0, 0]))
    pub.close()
    pub.close()  # twice is harmless
    assert (pub.produced, pub.delivered, pub.failed) == (2, 0, 2)


def test_publisher_names_a_bad_setting() -> None:
    with pytest.raises(ConnectorConfigError, match="MILLSTREAM_KAFKA"):
        ReadingPublisher("127.0.0.1:1", Topics("unit"), kafka_config={"no.such.key": "1"})


def test_publisher_counts_a_frame_kafka_refuses_outright_and_goes_on() -> None:
    """produce() itself refuses a frame (too large): counted failed, not stuck at the head."""
    pub = ReadingPublisher("127.0.0.1:1", Topics("unit"),
                           kafka_config={"message.max.bytes": "2000"})
    big = ReadingFrame("s", 1, 1, ["t" * 100] * 50, [1] * 50, [1.0] * 50, [0] * 50)
    pub.publish(big)  # does not raise
    assert (pub.failed, pub.backlog) == (50, 0)
    assert "too large" in str(pub.last_delivery_error).lower()
    pub.publish(ReadingFrame("s", 1, 51, ["t"], [1], [1.0], [0]))
    assert pub.produced == 1 and pub.backlog == 0
    pub.close()
    assert pub.failed == 51


def test_opcua_notifications_already_received_are_emitted_when_the_consumer_stops() -> None:
    """Stop or a lost session cancels the consumer; notifications asyncua had already
    queued for it are readings that entered the connector: they go out, not vanish."""
    catalog = load_catalog()
    pub = MemoryPublisher()
    src = OpcUaSource(catalog, catalog.source("opcua-sim"), pub)
    stamp_ = stamp(datetime(2025, 1, 2, tzinfo=UTC))

    def event(handle: int, value: float) -> DataChangeEvent:
        node = Node(cast(Any, None), ua.NodeId(ua.Int32(handle), ua.Int16(2)))
        dv = ua.DataValue(ua.Variant(value), SourceTimestamp=stamp_)
        item = ua.MonitoredItemNotification(ClientHandle=ua.UInt32(handle), Value=dv)
        return DataChangeEvent(node, value, DataChangeNotif(SubscriptionItemData(), item))

    # client handles as the session would have given the items at subscribe time
    src._items = {n: p for n, p in enumerate(src.tags, start=1)}

    async def go() -> None:
        sub = Subscription(cast(Any, None), ua.CreateSubscriptionParameters(), queue_maxsize=0)
        consumer = asyncio.create_task(src._consume(sub))
        await asyncio.sleep(0)  # the consumer waits for the queue
        for i in range(3):
            sub._deliver(event(i + 1, float(i)))  # as asyncua's publish callback does
        consumer.cancel()  # before it ran again
        await asyncio.gather(consumer, return_exceptions=True)

    asyncio.run(go())
    src._publish_pending()
    assert [f.tag for f in pub.sent] == [src.tags[:3]]
    assert src.notifications == 3
