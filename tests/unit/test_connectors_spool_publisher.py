"""The store-and-forward publisher's logic against a Kafka the test answers by hand."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError

from connectors import spool_publisher
from connectors.publisher import ReadingPublisher
from connectors.spool import Spool, SpoolConfig, SpoolPolicy
from connectors.spool_publisher import SpoolPublisher
from schemas.readings import FrameBuilder, ReadingFrame
from tests.support.synthetic import SteadySource


class FakeKafka:
    """The ReadingPublisher.send contract, answered by the test: holds callbacks until
    ``answer()``; ``room`` frames fit its local queue."""

    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.waiting: list[tuple[bytes, Any]] = []
        self.log: list[int] = []  # seq of every frame sent, in order
        self.last_error: str | None = None
        self.closed = False
        self.auto = False  # confirm every frame inside send()

    def send(self, value: bytes, key: bytes, n: int, on_done: Any) -> bool:
        if len(self.waiting) >= self.room:
            return False
        self.log.append(ReadingFrame.decode(value).seq)
        if self.auto:
            on_done(None)
        else:
            self.waiting.append((value, on_done))
        return True

    def answer(self, err: KafkaError | None = None, n: int | None = None) -> None:
        todo, self.waiting = self.waiting[:n], self.waiting[n or len(self.waiting):]
        for _value, on_done in todo:
            on_done(err)

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def publisher(tmp_path: Path, kafka: FakeKafka, **config: Any) -> SpoolPublisher:
    spool = Spool(SpoolConfig(tmp_path, fsync_ms=0, **config))
    return SpoolPublisher(cast(ReadingPublisher, kafka), spool, inflight_frames=4)


def frames(n: int, count: int = 10, epoch: int = 7) -> list[ReadingFrame]:
    b = FrameBuilder("src", epoch)
    out = []
    for _ in range(n):
        for i in range(count):
            b.add(f"a/t{i % 3}", 1_700_000_000_000 + b.next_seq + i, float(i))
        f = b.flush()
        assert f is not None
        out.append(f)
    return out


def test_publisher_sends_in_order_with_a_bounded_window(tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    fs = frames(10)
    for f in fs:
        pub.publish(f)
    assert kafka.log == [f.seq for f in fs[:4]]  # the rest waits on disk
    assert pub.spool_status()["frames"] == 10 and pub.spool_status()["inflight_frames"] == 4
    while kafka.waiting:
        kafka.answer()
        pub.poll()
    assert kafka.log == [f.seq for f in fs] and pub.delivered == 100 and pub.frames == 10
    assert pub.spool.counters.records == 0 and pub.failed == 0
    pub.close()


def test_frames_kafka_did_not_confirm_are_sent_again_in_order(tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    fs = frames(6)
    for f in fs:
        pub.publish(f)
    kafka.answer(None, 1)  # the first is confirmed
    kafka.answer(KafkaError(KafkaError._MSG_TIMED_OUT), 1)  # the second timed out
    pub.poll()
    assert kafka.log == [f.seq for f in fs[:4]]  # nothing new while two are in flight
    kafka.answer(None)  # frames 3 and 4 were confirmed meanwhile
    pub.poll()
    assert kafka.log[4] == fs[1].seq and pub.retries == 1  # the failed one first
    while kafka.waiting:
        kafka.answer()
        pub.poll()
    assert sorted(set(kafka.log)) == [f.seq for f in fs] and pub.delivered == 60
    assert pub.spool.counters.records == 0
    pub.close()


def test_a_frame_kafka_refuses_for_good_is_counted_failed(tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    pub.publish(frames(1)[0])
    kafka.answer(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    pub.poll()
    assert pub.failed == 10 and pub.delivered == 0 and pub.spool.counters.records == 0
    pub.close()


def test_frames_of_an_earlier_session_count_as_replayed(tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    for f in frames(3, epoch=1):
        pub.publish(f)
    pub.close()  # killed before Kafka answered
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    for f in frames(2, epoch=2):
        pub.publish(f)
    while kafka.waiting:
        kafka.answer()
        pub.poll()
    assert kafka.log == [1, 11, 21, 1, 11]
    assert (pub.replayed, pub.delivered) == (30, 20)
    pub.close()


def test_sending_a_backlog_is_reported_as_it_goes_and_when_done(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_publisher, "BACKLOG_EVERY_S", 0.0)  # every poll
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    for f in frames(10):  # Kafka away: more than one in-flight window (4) spooled
        pub.publish(f)
    with caplog.at_level(logging.INFO, logger="connectors.spool_publisher"):
        pub.poll()
        while kafka.waiting:
            kafka.answer()
            pub.poll()
    said = [r.getMessage() for r in caplog.records]
    progress = [m for m in said if "sending the backlog to Kafka" in m]
    assert progress[0].endswith("10 frame(s), 100 reading(s) left, 0 readings/s")
    assert any("6 frame(s), 60 reading(s) left" in m for m in progress)
    assert said[-1].endswith("backlog sent, Kafka has confirmed every spooled frame")
    pub.close()


def test_drop_oldest_emits_one_marker_per_tag_with_the_exact_range(tmp_path: Path) -> None:
    kafka = FakeKafka(room=0)  # Kafka away: nothing leaves
    pub = publisher(tmp_path, kafka, max_bytes=32 * 1024, segment_bytes=4096)
    markers: list[tuple[str, int, str]] = []
    pub.gap_handler = lambda tag, ts, reason: markers.append((tag, ts, reason))
    for f in frames(200):
        pub.publish(f)
    pub.poll()
    dropped = pub.spool.counters.dropped_readings
    assert dropped > 0 and not pub.blocked
    reasons = {r for _t, _ts, r in markers}
    total = 0
    for reason in reasons:
        m = re.fullmatch(r"gap: spool full, (\d+) readings of epoch 7 seq (\d+)\.\.(\d+) dropped",
                         reason)
        assert m, reason
        n, lo, hi = map(int, m.groups())
        assert n == hi - lo + 1
        total += n
        assert {t for t, _ts, r in markers if r == reason} == {"a/t0", "a/t1", "a/t2"}
    assert total == dropped
    pub.close()


def test_block_holds_frames_and_blocks_the_source_until_there_is_room(tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka, max_bytes=32 * 1024, segment_bytes=4096,
                    policy=SpoolPolicy.BLOCK)
    fs = frames(200)
    for f in fs:
        pub.publish(f)
        if pub.blocked:
            break
    assert pub.blocked and pub.spool_status()["held_readings"] == 10
    while kafka.waiting or pub.blocked:
        kafka.answer()
        pub.poll()
    assert not pub.blocked and pub.spool.counters.dropped_readings == 0
    assert pub.delivered == sum(len(f) for f in fs[: len(kafka.log)])
    pub.close()


def test_a_source_stops_reading_while_a_block_spool_is_full(tmp_path: Path) -> None:
    """The base's ``wait_unblocked`` hook: a polled source takes no readings while blocked,
    and resumes once Kafka confirms; nothing it read is lost."""
    kafka = FakeKafka(room=0)  # Kafka away
    pub = publisher(tmp_path, kafka, max_bytes=32 * 1024, segment_bytes=4096,
                    policy=SpoolPolicy.BLOCK)
    source = SteadySource("synthetic", pub, ["a/t0", "a/t1"], rate=5000, frame_ms=20)

    async def go() -> tuple[int, int, int]:
        stop = asyncio.Event()
        task = asyncio.create_task(source.serve(stop))
        while not pub.blocked:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        at_block = source.emitted
        await asyncio.sleep(0.5)
        while_blocked = source.emitted
        kafka.room = 1000
        while pub.blocked or source.emitted <= while_blocked:
            kafka.answer()
            await asyncio.sleep(0.02)
        kafka.auto = True  # from now on Kafka confirms at once (the final flush too)
        kafka.answer()
        stop.set()
        await task
        return at_block, while_blocked, source.emitted

    at_block, while_blocked, total = asyncio.run(go())
    assert while_blocked - at_block <= 2 * 5000 * 0.06  # at most a tick or two after
    assert total > while_blocked  # read again once unblocked
    assert pub.delivered == source.builder.produced == total and pub.failed == 0


def test_a_corrupt_segment_found_on_start_is_in_the_status_and_its_good_part_sent(
        tmp_path: Path) -> None:
    kafka = FakeKafka()
    pub = publisher(tmp_path, kafka)
    for f in frames(5, epoch=1):
        pub.publish(f)
    pub.close()  # killed before Kafka answered
    (seg,) = sorted(tmp_path.glob("*.seg"))
    with seg.open("r+b") as fh:
        fh.truncate(seg.stat().st_size - 3)  # the last write was cut short
    kafka = FakeKafka(room=10)
    pub = publisher(tmp_path, kafka)
    (report,) = pub.spool_status()["corrupt"]
    assert report["readable_records"] == 4 and "truncated" in report["reason"]
    pub.poll()  # the replay starts at the first poll
    while kafka.waiting:
        kafka.answer()
        pub.poll()
    assert kafka.log == [1, 11, 21, 31] and pub.replayed == 40
    pub.close()
    assert (tmp_path / report["kept_aside"]).stat().st_size == report["bytes"]
