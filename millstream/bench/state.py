"""``millstream bench state``: what checkpointing costs the stream worker.

The same backlog of frames (``tags`` tags of a generated catalog over 6 sources and 3
partitions, 10 readings per tag per second of event time, the shipped plant's three
window sizes) is read three times by a real ``millstream worker`` process, each with a
fresh consumer group: state in memory only (the baseline: no checkpoints), at-least-once
with a checkpoint of every partition each ``INTERVAL_S``, and exactly-once (one Kafka
transaction per partition and checkpoint). The rate is taken between two of the worker's
status samples inside the run, so start-up and the last partial second do not count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from millstream.bench.broker import BenchKafka, bench_kafka, produce, progress
from millstream.bench.ingest_catalog import write_catalog
from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics
from millstream.stack.processes import terminate
from schemas.catalog import load_catalog
from schemas.events import now_ms
from schemas.exceptions import MillstreamError
from schemas.readings import FrameBuilder
from schemas.status import read_status
from schemas.topics import Topics

__all__ = ["INTERVAL_S", "run"]

INTERVAL_S = 1.0  # checkpoints in the measured runs (the default is 5 s: 5x rarer)
SOURCES = 6
WINDOWS = [{"size_ms": 1000}, {"size_ms": 10000, "hop_ms": 5000}, {"size_ms": 60000}]


def _catalog(folder: Path, tags: int) -> Path:
    path = write_catalog(folder / "catalog.yaml", opcua_tags=tags,
                         opcua_endpoint="opc.tcp://127.0.0.1:4840", interval_ms=1000,
                         modbus_machines=0, modbus_span=0, modbus_endpoint="127.0.0.1:502")
    doc = yaml.safe_load(path.read_text())
    doc["streams"] = {"windows": WINDOWS, "lateness_ms": 1000}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=200))
    return path


def _frames(catalog_path: Path, readings: int) -> list[tuple[bytes, bytes]]:
    """Frames of about 1000 readings (as connectors send them), each source's tags
    sampled every 100 ms of event time, until ``readings``."""
    tags = list(load_catalog(catalog_path).tags())
    per_source = [tags[s::SOURCES] for s in range(SOURCES)]
    steps_per_frame = max(1, 1000 // max(1, len(per_source[0])))
    t0 = (now_ms() - 3_600_000) // 60_000 * 60_000
    builders = [FrameBuilder(f"bench-state-{s}", epoch=1, max_readings=1_000_000)
                for s in range(SOURCES)]
    out: list[tuple[bytes, bytes]] = []
    step = made = 0
    while made < readings:
        for s, fb in enumerate(builders):
            for k in range(steps_per_frame):
                ts = t0 + (step + k) * 100
                for i, tag in enumerate(per_source[s]):
                    fb.add(tag, ts, 50.0 + (i % 17) + (((step + k) * 7 + i) % 11) * 0.1)
            frame = fb.flush()
            if frame is not None:
                made += len(frame.tag)
                out.append((frame.key(), frame.encode()))
        step += steps_per_frame
    return out


def _measure(k: BenchKafka, prefix: str, catalog_path: Path, folder: Path, total: int,
             mode: str) -> dict[str, Any]:
    """Run one worker over the backlog; its readings/s and checkpoint figures."""
    status = folder / f"{mode}.json"
    interval = 0.0 if mode == "off" else INTERVAL_S
    guarantee = "exactly_once" if mode == "exactly_once" else "at_least_once"
    env = {**os.environ, "MILLSTREAM_KAFKA_BOOTSTRAP": k.bootstrap,
           "MILLSTREAM_TOPIC_PREFIX": prefix, "MILLSTREAM_CATALOG": str(catalog_path),
           "MILLSTREAM_DATA_DIR": str(folder / "data")}
    cmd = [sys.executable, "-m", "millstream.cli", "worker", "--app-id",
           f"bench-state-{mode}-{uuid.uuid4().hex[:6]}", "--status-file", str(status),
           "--checkpoint-interval", str(interval), "--guarantee", guarantee]
    with (folder / f"{mode}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    samples: list[tuple[int, int]] = []  # (at, readings) while the run is under way
    doc: dict[str, Any] = {}
    started = now_ms()
    deadline = time.monotonic() + 600
    try:
        while int(doc.get("readings", 0)) < total:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / f"{mode}.log").read_text(errors="replace")[-1500:]
                raise MillstreamError(f"bench state: the {mode} worker stopped or took over "
                                      f"600 s at {doc.get('readings')} of {total}:\n{tail}")
            time.sleep(0.05)
            doc = read_status(status) or {}
            if 0 < int(doc.get("readings", 0)) < total and (
                    not samples or samples[-1][0] != doc["at"]):
                samples.append((int(doc["at"]), int(doc["readings"])))
        done = now_ms()
    finally:
        terminate(proc, 20.0)
    if len(samples) >= 2:
        (t_a, r_a), (t_b, r_b) = samples[0], samples[-1]
    else:  # too short a run for two samples: start-up counts, the figure is low
        progress(f"{mode}: over within a status period; rate includes start-up "
                 "(use more --readings)")
        (t_a, r_a), (t_b, r_b) = (started, 0), (done, total)
    rate = (r_b - r_a) / max((t_b - t_a) / 1000, 1e-3)
    progress(f"{mode}: {rate:,.0f} readings/s, {doc.get('checkpoints', 0)} checkpoints of "
             f"~{doc.get('checkpoint_bytes', 0):,} bytes")
    return {"per_s": round(rate), "checkpoints": doc.get("checkpoints", 0),
            "checkpoint_bytes": doc.get("checkpoint_bytes", 0),
            "checkpoint_ms": doc.get("checkpoint_ms", 0.0)}


def run(settings: Settings, tags: int | None = None,
        readings: int | None = None) -> dict[str, Any]:
    tags = tags or 3000
    readings = readings or 1_500_000
    with tempfile.TemporaryDirectory(prefix="millstream-bench-state-") as tmp, \
            bench_kafka(settings) as k:
        folder = Path(tmp)
        catalog_path = _catalog(folder, tags)
        progress(f"state: {readings:,} readings of {tags:,} tags, {SOURCES} sources ...")
        frames = _frames(catalog_path, readings)
        total = sum(len(json.loads(v)["tag"]) for _, v in frames)
        prefix = f"bench-state-{uuid.uuid4().hex[:8]}"
        try:
            ensure_topics(k.bootstrap, Topics(prefix), k.conf)
            produced = produce(k, Topics(prefix).readings, frames)
            progress(f"produced {produced.messages:,} frames in {produced.seconds:.1f}s")
            runs = {mode: _measure(k, prefix, catalog_path, folder, total, mode)
                    for mode in ("off", "at_least_once", "exactly_once")}
        finally:
            k.delete_created(prefix)
    off = runs["off"]["per_s"] or 1
    return {
        "benchmark": "state", "readings": total, "tags": tags, "partitions": 3,
        "checkpoint_interval_s": INTERVAL_S, "kafka": k.description,
        "off_per_s": runs["off"]["per_s"],
        "at_least_once_per_s": runs["at_least_once"]["per_s"],
        "exactly_once_per_s": runs["exactly_once"]["per_s"],
        "ratio_at_least_once_vs_off": round(runs["at_least_once"]["per_s"] / off, 3),
        "ratio_exactly_once_vs_off": round(runs["exactly_once"]["per_s"] / off, 3),
        "checkpoint_bytes": runs["at_least_once"]["checkpoint_bytes"],
        "checkpoint_ms": runs["at_least_once"]["checkpoint_ms"],
        "eos_checkpoint_ms": runs["exactly_once"]["checkpoint_ms"],
        "note": "readings/s of the worker over a backlog; checkpoints of every partition "
                f"each {INTERVAL_S:g}s (the default is 5s); off = state in memory only",
    }
