"""``millstream bench spool``: the disk spool's write and replay rates against real Kafka.

The same frames of 1000 plant readings go (1) straight to Kafka through the connector's
:class:`~connectors.publisher.ReadingPublisher` (the baseline: no spool), (2) into a spool
on disk, with the default fsync policy and with an fsync per frame, (3) through the
write-ahead :class:`~connectors.spool_publisher.SpoolPublisher` live (spool, then Kafka),
and (4) out of a full spool into Kafka, as after an outage: the replay rate, which must
reach the live rate of 100,000 readings/s so that a backlog drains while data arrives.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.publisher import ReadingPublisher
from connectors.spool import Spool, SpoolConfig
from connectors.spool_publisher import SpoolPublisher
from millstream.bench.broker import BenchKafka, bench_kafka, progress
from millstream.bench.workload import generate_readings
from millstream.settings import Settings
from schemas.catalog import Catalog, load_catalog
from schemas.events import now_ms
from schemas.exceptions import MillstreamError
from schemas.readings import FrameBuilder, ReadingFrame
from schemas.topics import Topics

__all__ = ["DEFAULT_READINGS", "FRAME_SIZE", "LIVE_TARGET", "run"]

DEFAULT_READINGS = 1_000_000
FRAME_SIZE = 1000
LIVE_TARGET = 100_000  # readings/s one connector host must sustain (issue 8)
FSYNC_EVERY_FRAME_MAX = 200  # frames: an fsync each costs milliseconds, keep the run short


def make_frames(catalog: Catalog, readings: int) -> list[ReadingFrame]:
    """``readings`` plant readings as frames of 1000 of one source, numbered 1..n."""
    pattern = generate_readings(catalog, min(readings, 30_000))
    builder = FrameBuilder("bench-spool", now_ms(), max_readings=FRAME_SIZE)
    frames = []
    for i in range(readings):
        r = pattern[i % len(pattern)]
        builder.add(r.tag, r.ts + (i // len(pattern)) * 3_000_000, r.value, r.quality)
        if builder.full:
            frame = builder.flush()
            assert frame is not None
            frames.append(frame)
    last = builder.flush()
    return frames + ([last] if last is not None else [])


def _rate(readings: int, seconds: float) -> int:
    return round(readings / seconds) if seconds > 0 else 0


def _drain(what: str, poll: Callable[[], None], done: Callable[[], bool],
           timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        poll()
        if time.monotonic() > deadline:
            raise MillstreamError(f"bench spool: {what} did not finish within {timeout:.0f}s; "
                                  "is the broker overloaded?")


def _direct(k: BenchKafka, frames: list[ReadingFrame], readings: int) -> float:
    pub = ReadingPublisher(k.bootstrap, Topics(f"bench-spool-direct-{uuid.uuid4().hex[:8]}"),
                           kafka_config=k.conf)
    k.created.append(pub.topic)
    t0 = time.perf_counter()
    for f in frames:
        pub.publish(f)
        pub.poll(0)
    _drain("the direct produce", lambda: pub.poll(0.01), lambda: pub.delivered >= readings)
    seconds = time.perf_counter() - t0
    pub.close()
    if pub.failed:
        raise MillstreamError(f"bench spool: Kafka failed {pub.failed} readings of the baseline")
    return seconds


def _write(folder: Path, frames: list[ReadingFrame], fsync_ms: int) -> tuple[float, Spool]:
    spool = Spool(SpoolConfig(folder, max_bytes=1 << 40, segment_bytes=64 << 20,
                              fsync_ms=fsync_ms))
    t0 = time.perf_counter()
    for f in frames:
        spool.append(now_ms(), f.epoch, f.seq, len(f), f.key(), f.encode())
    seconds = time.perf_counter() - t0
    return seconds, spool


def _spooled(k: BenchKafka, folder: Path, frames: list[ReadingFrame], readings: int
             ) -> tuple[float, float]:
    """(live write-ahead publish through the spool, replay of a full spool) in seconds."""
    topics = Topics(f"bench-spool-{uuid.uuid4().hex[:8]}")
    k.created.append(topics.readings)
    config = SpoolConfig(folder, max_bytes=1 << 40, segment_bytes=64 << 20)
    pub = SpoolPublisher(ReadingPublisher(k.bootstrap, topics, kafka_config=k.conf),
                         Spool(config))
    t0 = time.perf_counter()
    for f in frames:
        pub.publish(f)
        pub.poll(0)
    _drain("the spooled publish", lambda: pub.poll(0.01), lambda: pub.delivered >= readings)
    live = time.perf_counter() - t0
    pub.close()
    # an outage's backlog: the spool holds every frame, Kafka has none of them yet
    _, spool = _write(folder, frames, fsync_ms=1000)
    spool.close()
    pub = SpoolPublisher(ReadingPublisher(k.bootstrap, topics, kafka_config=k.conf),
                         Spool(config))
    t0 = time.perf_counter()
    _drain("the replay", lambda: pub.poll(0.001), lambda: pub.spool.counters.records == 0)
    replay = time.perf_counter() - t0
    if pub.replayed != readings or pub.failed:
        raise MillstreamError(f"bench spool: replayed {pub.replayed} of {readings} readings, "
                              f"{pub.failed} failed")
    pub.close()
    return live, replay


def run(settings: Settings, readings: int | None = None) -> dict[str, Any]:
    n = readings or DEFAULT_READINGS
    frames = make_frames(load_catalog(settings.catalog), n)
    on_disk = sum(len(f.encode()) for f in frames[:50]) / sum(len(f) for f in frames[:50])
    with tempfile.TemporaryDirectory(prefix="millstream-bench-spool-") as tmp:
        write_s, spool = _write(Path(tmp) / "w1000", frames, fsync_ms=1000)
        spool.close()
        fsync_status = spool.status()
        few = frames[:FSYNC_EVERY_FRAME_MAX]
        few_n = sum(len(f) for f in few)
        sync_s, spool = _write(Path(tmp) / "w0", few, fsync_ms=0)
        spool.close()
        t0 = time.perf_counter()
        Spool(SpoolConfig(Path(tmp) / "w1000", max_bytes=1 << 40)).close()
        recovery_s = time.perf_counter() - t0
        progress(f"spool writes done ({n} readings); now against Kafka")
        with bench_kafka(settings) as k:
            try:  # a warm-up first, so that neither side pays for the broker's first topic
                _direct(k, frames[:20], sum(len(f) for f in frames[:20]))
                direct_s = _direct(k, frames, n)
                live_s, replay_s = _spooled(k, Path(tmp) / "fwd", frames, n)
            finally:
                k.delete_created()
    replay = _rate(n, replay_s)
    direct = _rate(n, direct_s)
    return {
        "benchmark": "spool",
        "readings": n,
        "frame_readings": FRAME_SIZE,
        "kafka": k.description,
        "bytes_per_reading_on_disk": round(on_disk, 1),
        "direct_produce_readings_per_s": direct,
        "spool_write_readings_per_s": {
            "fsync_every_1000ms": _rate(n, write_s),
            "fsync_every_frame": _rate(few_n, sync_s),
        },
        "spooled_publish_readings_per_s": _rate(n, live_s),
        "replay_readings_per_s": replay,
        "replay_vs_direct_produce": round(replay / direct, 2) if direct else None,
        "replay_vs_live_target": round(replay / LIVE_TARGET, 2),
        "live_target_readings_per_s": LIVE_TARGET,
        "recovery_scan_s": round(recovery_s, 3),
        "write_with_fsync_ms_per_frame": round(1000 * sync_s / max(1, len(few)), 3),
        "fsync_rounds_in_write": fsync_status.get("fsync_rounds"),
        "fsync_seconds_in_write": fsync_status.get("fsync_seconds"),
    }
