"""``millstream bench wire``: why readings travel as frames, measured against real Kafka.

The same plant workload goes into two fresh single-partition topics: N readings as one JSON
message each, and (continued to 10 N, so the run is long enough to time) millstream frames
of 1000 readings. Each topic is then read from the start by a bare
confluent-kafka loop (the ceiling) and by a real Faust worker, both decoding every
message; finally a Faust worker runs the streams stage's FrameProcessor (windows and
anomaly detection) on the frames: the readings/s one stream worker process sustains.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from millstream.bench.broker import BenchKafka, bench_kafka, produce, progress
from millstream.bench.faust_runner import run_faust
from millstream.bench.raw import Decode, Run, consume_raw, count_frame, count_reading
from millstream.bench.workload import frame_messages, iter_readings, per_reading_messages
from millstream.settings import Settings
from schemas.catalog import Catalog, load_catalog
from schemas.exceptions import MillstreamError
from schemas.readings import Reading

__all__ = ["DEFAULT_READINGS", "FRAMES_FACTOR", "FRAME_SIZE", "run", "shape_result"]

DEFAULT_READINGS = 200_000
FRAME_SIZE = 1000
# The frames topic carries this many times the readings: at 1000 readings per message a
# frames run over N readings lasts a fraction of a second, too short to time reliably.
FRAMES_FACTOR = 10


def _rate(run: Run | None) -> int | None:
    """Readings/s of a run that completed; None when it did not run or did not finish."""
    if run is None or not run.completed or run.per_s is None:
        return None
    return round(run.per_s)


def _ratio(a: int | None, b: int | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def shape_result(readings: int, frame_readings: int, kafka: str, runs: dict[str, Run | None],
                 bytes_per_reading: dict[str, float],
                 processor: dict[str, int] | None = None) -> dict[str, Any]:
    """The benchmark's JSON: figures side by side, then how each run went."""
    r = {name: _rate(run) for name, run in runs.items()}
    frames_f, per_f = r.get("frames_faust"), r.get("per_reading_faust")
    return {
        "benchmark": "wire",
        "readings": readings,
        "frame_readings": frame_readings,
        "frames": {
            "faust_readings_per_s": frames_f,
            "raw_readings_per_s": r.get("frames_raw"),
            "faust_with_processor_readings_per_s": r.get("frames_faust_processor"),
            "raw_with_processor_readings_per_s": r.get("frames_raw_processor"),
        },
        "per_reading_messages": {
            "faust_readings_per_s": per_f,
            "raw_readings_per_s": r.get("per_reading_raw"),
        },
        "speedup_frames_vs_per_reading_faust": _ratio(frames_f, per_f),
        "faust_share_of_raw_ceiling": {
            "frames": _ratio(frames_f, r.get("frames_raw")),
            "per_reading": _ratio(per_f, r.get("per_reading_raw")),
        },
        "bytes_per_reading": {k: round(v, 1) for k, v in bytes_per_reading.items()},
        "frame_size": FRAME_SIZE,
        "processor_counters": processor,
        "runs": {
            name: None if run is None else {
                "readings": run.readings, "messages": run.messages,
                "seconds": round(run.seconds, 3), "completed": run.completed,
                "note": run.note,
            }
            for name, run in runs.items()
        },
        "kafka": kafka,
        "cpus": os.cpu_count(),
    }


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks end the workers and the broker."""

    def _raise(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _processor_decode(catalog: Catalog, topic: str) -> Decode | None:
    """FrameProcessor as a Decode for the bare loop; None until streams/ provides it."""
    try:
        from streams.processor import FrameProcessor
    except ImportError:
        return None
    proc = FrameProcessor(catalog)

    def decode(value: bytes | None) -> int:
        before = proc.readings
        proc.process(None, value, topic, 0, -1, int(time.time() * 1000))
        return int(proc.readings - before)

    return decode


def _has_processor() -> bool:
    try:
        import streams.processor  # noqa: F401
    except ImportError:
        return False
    return True


def _show(name: str, run: Run) -> None:
    rate = f"{run.per_s:,.0f} readings/s" if run.per_s else "no rate"
    state = "" if run.completed else f"  (INCOMPLETE: {run.note})"
    progress(f"{name}: {run.readings:,} readings in {run.messages:,} messages, "
             f"{run.seconds:.2f}s, {rate}{state}")


def run(settings: Settings, readings: int | None = None) -> dict[str, Any]:
    n = readings or DEFAULT_READINGS
    if n < 1:
        raise MillstreamError(f"--readings must be at least 1, got {n}")
    catalog = load_catalog(settings.catalog)
    prefix = f"millstream-bench-wire-{os.getpid()}-{int(time.time())}"
    topics = {"per_reading": f"{prefix}.per-reading", "frames": f"{prefix}.frames"}
    load = os.getloadavg()[0]
    with _sigterm_as_interrupt(), bench_kafka(settings) as k:
        try:
            out = _measure(k, catalog, settings, n, topics)
        finally:
            if settings.kafka_bootstrap:
                k.delete_created(prefix)
    out["loadavg_1m"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
    return out


def _produce(k: BenchKafka, catalog: Catalog, topics: dict[str, str],
             counts: dict[str, int]) -> dict[str, float]:
    """Both formats into their topics, generated on the fly; bytes per reading of each."""
    size: dict[str, float] = {}
    for fmt, encode in (("per_reading", per_reading_messages), ("frames", _frames)):
        n = counts[fmt]
        progress(f"producing {n:,} readings as {fmt} messages ...")
        done = produce(k, topics[fmt], encode(iter_readings(catalog, n)))
        size[fmt] = done.bytes / n
        progress(f"produced {done.messages:,} {fmt} messages ({size[fmt]:.1f} B/reading) "
                 f"in {done.seconds:.1f}s")
    gc.collect()
    return size


def _frames(readings: Iterable[Reading]) -> Iterator[tuple[bytes, bytes]]:
    return frame_messages(readings, FRAME_SIZE)


def _measure(k: BenchKafka, catalog: Catalog, settings: Settings, n: int,
             topics: dict[str, str]) -> dict[str, Any]:
    k.create_topics(list(topics.values()))
    counts = {"per_reading": n, "frames": n * FRAMES_FACTOR}
    size = _produce(k, catalog, topics, counts)
    runs: dict[str, Run | None] = {}
    for name, fmt, decode in (
        ("per_reading_raw", "per_reading", count_reading),
        ("frames_raw", "frames", count_frame),
        ("frames_raw_processor", "frames", _processor_decode(catalog, topics["frames"])),
    ):
        if decode is None:
            runs[name] = None
            continue
        progress(f"{name}: bare confluent-kafka loop ...")
        runs[name] = consume_raw(k.bootstrap, topics[fmt], counts[fmt], decode, k.conf,
                                 timeout=60 + counts[fmt] / 2_000)
        _show(name, runs[name] or Run(0, 0, 0.0, False))
    counters: dict[str, int] | None = None
    for name, fmt, mode in (
        ("per_reading_faust", "per_reading", "per-reading"),
        ("frames_faust", "frames", "frames"),
        ("frames_faust_processor", "frames", "processor"),
    ):
        if mode == "processor" and not _has_processor():
            runs[name] = None
            continue
        if k.conf:
            progress("note: the Faust worker connects without the configured "
                     "TLS/SASL options (plain Kafka only)")
        progress(f"{name}: starting a Faust worker ...")
        result, found = run_faust(k.bootstrap, topics[fmt], mode, counts[fmt],
                                  catalog=settings.catalog, timeout=60 + counts[fmt] / 1_000)
        runs[name] = result
        counters = found or counters
        _show(name, result)
    return shape_result(n, counts["frames"], k.description, runs, size, counters)
