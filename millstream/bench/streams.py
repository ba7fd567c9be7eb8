"""``millstream bench streams``: the stream worker against its ceiling and its peers.

A plant of ``--tags`` tags (10,000), each sampled every ``--interval-ms`` (100 ms: 10
readings per tag per 1 s window), goes to a real Kafka as the connectors send it: frames
of 1000 readings keyed by source, lz4-compressed, by an idempotent producer
(``--readings``, 2,000,000). Then, on that same data, in readings/s:

- (a) ``baseline``: a bare confluent-kafka loop that decodes every frame with the worker's
  own decoder: the ceiling;
- (b) ``millstream``: the streams worker (:func:`streams.app.create_app`: every configured
  window, anomaly scoring, rules, every output sent and delivered) under its default
  guarantee;
- (c) ``quix``: Quix Streams computing the same tumbling 1 s min/max/mean/count per tag,
  fed one message per reading as its documentation shows, and fed the frames exploded
  with ``expand=True``; the faster counts;
- (d) ``naive_faust``: a Faust agent updating a windowed Faust table per reading;
- (e) ``millstream_eos``: the worker again with ``guarantee="exactly_once"``.

The peers that handle one reading at a time run on the first ``peer_readings`` readings
(500,000), for at most ``peer_seconds`` (60) each: their rate is steady long before, and
at a few thousand readings/s they would otherwise take minutes. The workers and the
ceiling run on all the readings.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connectors.publisher import DEFAULT_PRODUCER_CONFIG
from millstream.bench._proc import own_cpu_seconds
from millstream.bench.broker import BenchKafka, bench_kafka, produce, progress
from millstream.bench.faust_runner import run_child
from millstream.bench.plant import plant_frames, scaled_catalog
from millstream.bench.quix import quix_python, run_quix
from millstream.bench.raw import Run, consume_raw
from millstream.bench.streams_result import RunInfo, shape_result
from millstream.bench.wire import _sigterm_as_interrupt
from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics
from schemas.catalog import Catalog, load_catalog
from schemas.exceptions import MillstreamError
from schemas.topics import Topics
from streams.decode import decode_frame

__all__ = ["DEFAULT_READINGS", "DEFAULT_TAGS", "PEER_READINGS", "run"]

DEFAULT_READINGS = 2_000_000
DEFAULT_TAGS = 10_000
PEER_READINGS = 500_000
PEER_SECONDS = 60.0
INTERVAL_MS = 100  # 10 readings per tag per 1 s window
TAGS_PER_SOURCE = 1000
# the connectors' producer settings: lz4 batches, and idempotence, which keeps a source's
# frames in order through retries (without it a loaded broker's retries reorder them,
# and frames 1 s apart arrive late)
_CONNECTOR_CONF = dict(DEFAULT_PRODUCER_CONFIG)


@dataclass(frozen=True)
class _Plan:
    readings: int
    tags: int
    peer_readings: int
    peer_seconds: float
    interval_ms: int  # each tag is sampled this often
    topics: Topics
    per_reading: str  # topic of one message per reading, for the per-reading peers
    catalog: Catalog
    settings: Settings


def run(settings: Settings, readings: int | None = None, tags: int | None = None,
        peer_readings: int | None = None, peer_seconds: float | None = None,
        interval_ms: int | None = None) -> dict[str, Any]:
    n, t = readings or DEFAULT_READINGS, tags or DEFAULT_TAGS
    interval = interval_ms or INTERVAL_MS
    if n < 1 or t < 1 or interval < 1:
        raise MillstreamError(f"--readings, --tags and --interval-ms must be at least 1, "
                              f"got {n}, {t} and {interval}")
    peers = min(n, peer_readings or PEER_READINGS)
    prefix = f"millstream-bench-streams-{os.getpid()}-{int(time.time())}"
    base = load_catalog(settings.catalog)
    plan = _Plan(n, t, peers, peer_seconds or PEER_SECONDS, interval, Topics(prefix),
                 f"{prefix}.per-reading",
                 scaled_catalog(base, t, TAGS_PER_SOURCE), settings)
    load = os.getloadavg()[0]
    with _sigterm_as_interrupt(), bench_kafka(settings) as k:
        try:
            out = _measure(k, plan)
        finally:
            if settings.kafka_bootstrap:
                k.delete_created(prefix)
    out["loadavg_1m"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
    return out


def _measure(k: BenchKafka, plan: _Plan) -> dict[str, Any]:
    topics = plan.topics
    ensure_topics(k.bootstrap, topics, k.conf)
    k.created.extend(topics.all())
    k.create_topics([plan.per_reading], partitions=topics.partitions(topics.readings))
    produced = _produce(k, plan)
    runs: dict[str, RunInfo] = {}
    notes: list[str] = []

    progress(f"(a) baseline: bare confluent-kafka consume + decode of {plan.readings:,} "
             "readings ...")
    cpu = own_cpu_seconds()
    base = consume_raw(k.bootstrap, topics.readings, plan.readings, _decode_count, k.conf,
                       timeout=120 + plan.readings / 20_000)
    runs["baseline"] = RunInfo(base, {"cpu_seconds": round(own_cpu_seconds() - cpu, 3)})
    _show("baseline", runs["baseline"].run)

    runs["millstream"] = _worker(k, plan, None)
    runs["millstream_eos"] = _worker(k, plan, "exactly_once")

    runs.update(_quix(k, plan, notes))
    progress(f"(d) naive Faust: a windowed table updated per reading, {plan.peer_readings:,} "
             f"readings or {plan.peer_seconds:.0f} s ...")
    run, doc = run_child(
        [sys.executable, "-m", "millstream.bench._naive_faust", "--bootstrap", k.bootstrap,
         "--topic", topics.readings, "--partitions",
         str(topics.partitions(topics.readings)), "--readings", str(plan.peer_readings),
         "--app-id", f"{topics.prefix}-naive", "--seconds", str(plan.peer_seconds)],
        "naive faust", timeout=120 + 5 * plan.peer_seconds)  # its changelog flush is slow
    runs["naive_faust"] = RunInfo(run, doc)
    _show("naive_faust", run)
    out = shape_result(plan.readings, plan.tags, plan.peer_readings, produced, runs, notes,
                       k.description)
    out["peer_seconds"] = plan.peer_seconds
    out["interval_ms"] = plan.interval_ms
    return out


def _produce(k: BenchKafka, plan: _Plan) -> dict[str, float]:
    progress(f"producing {plan.readings:,} readings of {plan.tags:,} tags as frames of "
             f"1000 (lz4, keyed by source) to {plan.topics.readings} ...")
    frames = produce(k, plan.topics.readings,
                     ((f.key, f.value) for f in plant_frames(plan.catalog, plan.readings,
                                                             step_ms=plan.interval_ms)),
                     timeout=300 + plan.readings / 5_000, conf=_CONNECTOR_CONF)
    progress(f"produced {frames.messages:,} frames in {frames.seconds:.1f}s "
             f"({frames.bytes / plan.readings:.1f} B/reading before compression)")
    progress(f"producing the first {plan.peer_readings:,} readings one message each "
             f"(keyed by tag) to {plan.per_reading} ...")
    single = produce(k, plan.per_reading,
                     _per_reading(plan.catalog, plan.peer_readings, plan.interval_ms),
                     timeout=300 + plan.peer_readings / 2_000)
    progress(f"produced {single.messages:,} messages in {single.seconds:.1f}s")
    return {"frames": frames.messages, "frame_bytes_per_reading":
            round(frames.bytes / plan.readings, 1),
            "per_reading_bytes": round(single.bytes / max(single.messages, 1), 1)}


def _per_reading(catalog: Catalog, n: int,
                 interval_ms: int) -> Iterator[tuple[bytes, bytes]]:
    """The same readings (the workload's first ``n``), one JSON message each."""
    for f in plant_frames(catalog, n, step_ms=interval_ms):
        doc = json.loads(f.value)
        source, epoch, seq = doc["source"], doc["epoch"], doc["seq"]
        for i, (tag, ts, value, q) in enumerate(zip(doc["tag"], doc["ts"], doc["value"],
                                                    doc["quality"], strict=True)):
            yield tag.encode(), json.dumps(
                {"tag": tag, "ts": ts, "value": value, "quality": q, "source": source,
                 "epoch": epoch, "seq": seq + i}, separators=(",", ":")).encode()


def _decode_count(value: bytes | None) -> int:
    """The ceiling's work per message: the worker's own decoder, to arrays."""
    return len(decode_frame(value).tag)


def _worker(k: BenchKafka, plan: _Plan, guarantee: str | None) -> RunInfo:
    name = "millstream" if guarantee is None else "millstream_eos"
    label = "(b)" if guarantee is None else "(e)"
    progress(f"{label} {name}: the streams worker (create_app"
             f"{'' if guarantee is None else f', guarantee={guarantee!r}'}) on "
             f"{plan.readings:,} readings ...")
    if k.conf:
        progress("note: the workers connect without the configured TLS/SASL options")
    cmd = [sys.executable, "-m", "millstream.bench._streams_worker", "--bootstrap",
           k.bootstrap, "--prefix", plan.topics.prefix, "--tags", str(plan.tags),
           "--tags-per-source", str(TAGS_PER_SOURCE), "--readings", str(plan.readings),
           "--app-id", f"{plan.topics.prefix}-{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"]
    if plan.settings.catalog is not None:
        cmd += ["--catalog", str(plan.settings.catalog)]
    if guarantee is not None:
        cmd += ["--guarantee", guarantee]
    run, doc = run_child(cmd, name, start_timeout=120.0,
                         timeout=120 + plan.readings / 10_000)
    _show(name, run)
    return RunInfo(run, doc)


def _quix(k: BenchKafka, plan: _Plan, notes: list[str]) -> dict[str, RunInfo]:
    python = quix_python(plan.settings.cache_dir)
    out: dict[str, RunInfo] = {}
    for mode, topic in (("per-reading", plan.per_reading), ("expand", plan.topics.readings)):
        progress(f"(c) Quix Streams, {mode}: tumbling 1 s min/max/mean/count per tag on "
                 f"{plan.peer_readings:,} readings or {plan.peer_seconds:.0f} s ...")
        output = f"{plan.topics.prefix}.quix-{mode}"
        k.created.append(output)
        run, doc = run_quix(python, k.bootstrap, topic, mode, plan.peer_readings, output,
                            f"{plan.topics.prefix}-quix-{mode}", plan.peer_seconds,
                            timeout=120 + 2 * plan.peer_seconds)
        name = f"quix_{mode.replace('-', '_')}"
        out[name] = RunInfo(run, doc)
        _show(name, run)
        if not run.completed:
            notes.append(f"{name} did not finish: {run.note}")
    return out


def _show(name: str, run: Run) -> None:
    rate = f"{run.per_s:,.0f} readings/s" if run.per_s else "no rate"
    state = "" if run.completed else f"  (INCOMPLETE: {run.note})"
    progress(f"{name}: {run.readings:,} readings in {run.seconds:.2f}s, {rate}{state}")
