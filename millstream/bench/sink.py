"""``millstream bench sink``: the ClickHouse sink end to end from Kafka, against a raw
clickhouse-connect columnar insert of the same rows, in the same run.

N readings (frames of 1000, real timestamps, lz4 as the connectors produce them) go into a
fresh readings topic. The raw baseline inserts those rows, already as columns in memory,
into a fresh chDB with the same schema (rollup views included), in batches of the sink's
size. Then the real ClickHouseSink consumes the topic into another fresh chDB directory.
Its rate runs from the first message consumed to the last row inserted. chDB opens one
directory per process at a time, so the runs take turns: the raw insert runs before and
after the sink (each into a fresh directory), and the sink is compared with their mean, so
a machine whose load changes during the run does not favour either side.

The sink names each batch with a deduplication token (exactly once); ClickHouse then
skips hashing the block, which a plain insert into the same table pays. So the raw insert
also runs (before and after the sink) naming its batches the same way:
``ratio_vs_tokens`` compares the sink with that one, the cost of the sink's machinery alone.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from millstream.bench.broker import bench_kafka, produce, progress
from millstream.bench.workload import frame_messages, iter_readings
from millstream.settings import Settings
from schemas.catalog import Catalog, load_catalog
from schemas.events import now_ms
from schemas.exceptions import MillstreamError
from schemas.readings import ReadingFrame
from schemas.topics import Topics
from sinks.base import BatchPolicy
from sinks.chclient import open_client
from sinks.clickhouse import ClickHouseSink
from sinks.migrations import migrate
from sinks.rows import READINGS_COLUMNS, frame_columns

__all__ = ["DEFAULT_READINGS", "run", "shape_result"]

DEFAULT_READINGS = 1_000_000
BATCH_ROWS = 50_000
# the last partial batch waits flush_ms before its insert: a latency knob, not throughput;
# kept short so a run of a few seconds does not count half a second of waiting
FLUSH_MS = 100


def shape_result(rows: int, sink_s: float, raw_s: float, **extra: Any) -> dict[str, Any]:
    """The benchmark's JSON; the CLI prints it as the last stdout line."""
    sink_rate = rows / sink_s if sink_s > 0 else 0.0
    raw_rate = rows / raw_s if raw_s > 0 else 0.0
    return {"rows": rows, "sink_rows_per_s": round(sink_rate),
            "raw_insert_rows_per_s": round(raw_rate),
            "ratio": round(sink_rate / raw_rate, 3) if raw_rate else None, **extra}


def _columns(messages: list[tuple[bytes, bytes]], catalog: Catalog) -> list[list[Any]]:
    units = {path: info.spec.unit for path, info in catalog.tags().items()}
    cols: list[list[Any]] = [[] for _ in READINGS_COLUMNS]
    for _key, value in messages:
        frame_cols, _ = frame_columns(ReadingFrame.decode(value), units)
        for dest, col in zip(cols, frame_cols, strict=True):
            dest.extend(col)
    return cols


def raw_insert(dsn: str, cols: list[list[Any]], *, tokens: bool = False) -> float:
    """Seconds to insert the columns in BATCH_ROWS batches with clickhouse-connect.

    ``tokens``: name each batch with an ``insert_deduplication_token``, as the sink does;
    ClickHouse then does not hash the block's data for deduplication (the readings table
    keeps a deduplication window), which makes the insert itself cheaper.
    """
    client = open_client(dsn)
    try:
        migrate(client)
        ctx = client.create_insert_context("readings", list(READINGS_COLUMNS),
                                           column_oriented=True)
        n = len(cols[0])
        run = uuid.uuid4().hex
        t0 = time.perf_counter()
        for lo in range(0, n, BATCH_ROWS):
            if tokens:
                ctx.settings = {"insert_deduplication_token": f"{run}-{lo}"}
            ctx.data = [c[lo:lo + BATCH_ROWS] for c in cols]
            client.insert(context=ctx)
        seconds = time.perf_counter() - t0
        stored = client.query("SELECT count() FROM readings").result_rows[0][0]
    finally:
        client.close()
    if stored != n:
        raise MillstreamError(f"the raw insert stored {stored} of {n} rows")
    return seconds


def sink_run(dsn: str, catalog: Catalog, bootstrap: str, topics: Topics, n: int,
             conf: dict[str, str], timeout: float) -> tuple[float, dict[str, Any]]:
    """Seconds from the sink's first consumed message to its n-th inserted row."""
    sink = ClickHouseSink(catalog, bootstrap=bootstrap, topics=topics, dsn=dsn,
                          group_id=f"bench-sink-{uuid.uuid4().hex[:8]}", kafka_config=conf,
                          policy=BatchPolicy(batch_rows=BATCH_ROWS, flush_ms=FLUSH_MS))
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), name="bench-sink", daemon=True)
    first = last = 0.0
    try:
        thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sink.counts["inserted"]["readings"] < n:
            if not first and sink.counts["consumed"]:
                first = time.perf_counter()
            time.sleep(0.002)
        last = time.perf_counter()
    finally:
        stop.set()
        thread.join(60)
        status = sink.status(running=False)
        sink.close()
    if status["inserted"]["readings"] < n:
        raise MillstreamError(f"the sink stored {status['inserted']['readings']} of {n} "
                              f"readings within {timeout:.0f}s (status: {status})")
    return last - first, status


def run(settings: Settings, readings: int | None = None) -> dict[str, Any]:
    n = readings or DEFAULT_READINGS
    catalog = load_catalog(settings.catalog)
    progress(f"generating {n:,} readings in frames of 1000")
    messages = list(frame_messages(iter_readings(catalog, n, t0_ms=now_ms() - 86_400_000)))
    cols = _columns(messages, catalog)
    tmp = Path(tempfile.mkdtemp(prefix="millstream-bench-sink-"))
    try:
        progress("raw clickhouse-connect columnar insert into chDB")
        raw_before = raw_insert(f"chdb://{tmp / 'raw'}", cols)
        tokens_before = raw_insert(f"chdb://{tmp / 'raw-tokens'}", cols, tokens=True)
        progress(f"raw: {n / raw_before:,.0f} rows/s, with tokens {n / tokens_before:,.0f}")
        with bench_kafka(settings) as k:
            topics = Topics(f"bench-sink-{uuid.uuid4().hex[:8]}")
            k.create_topics(topics.all())
            try:
                # lz4, as the connectors produce them (connectors/publisher.py)
                sent = produce(k, topics.readings, messages, compression="lz4")
                progress(f"produced {sent.messages} frames ({sent.bytes / 1e6:.0f} MB); "
                         "running the sink")
                sink_s, status = sink_run(f"chdb://{tmp / 'sink'}", catalog, k.bootstrap,
                                          topics, n, k.conf, timeout=max(120.0, n / 5000))
            finally:
                k.delete_created()
        progress(f"sink: {n / sink_s:,.0f} rows/s end to end; raw insert again")
        raw_after = raw_insert(f"chdb://{tmp / 'raw-after'}", cols)
        tokens_after = raw_insert(f"chdb://{tmp / 'raw-tokens-after'}", cols, tokens=True)
        progress(f"raw: {n / raw_after:,.0f} rows/s, with tokens {n / tokens_after:,.0f}")
        raw_s = (raw_before + raw_after) / 2
        raw_tokens = (tokens_before + tokens_after) / 2
        insert_rate = status["insert_rows_per_s"].get("readings")
        insert_s = n / insert_rate if insert_rate else 0.0
        return shape_result(n, sink_s, raw_s, benchmark="sink", kafka=k.description,
                            raw_runs_rows_per_s=[round(n / raw_before), round(n / raw_after)],
                            raw_insert_tokens_rows_per_s=round(n / raw_tokens),
                            raw_tokens_runs_rows_per_s=[round(n / tokens_before),
                                                        round(n / tokens_after)],
                            ratio_vs_tokens=round(raw_tokens / sink_s, 3),
                            sink_insert_share=round(insert_s / sink_s, 3) if sink_s else None,
                            batch_rows=BATCH_ROWS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
