"""Exactly once into the tables: every reading delivered again (a new consumer group
reading from the start, and the same frames produced twice) is stored once, and the
rollups that ClickHouse maintains on each insert stay equal to a recomputation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from millstream.query import endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.readings import FrameBuilder, Quality, ReadingFrame
from schemas.topics import Topics
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for

pytestmark = pytest.mark.integration

T0 = 1_793_000_000_000


def make_frames(catalog: Catalog, sources: int, frames: int, start: int = 0) -> list[ReadingFrame]:
    tags = list(catalog.tags())
    out = []
    for s in range(sources):
        b = FrameBuilder(f"redeliver-{s}", epoch=1, max_readings=500, next_seq=1 + start * 500)
        for i in range(start * 500, (start + frames) * 500):
            q = Quality.BAD if i % 17 == 0 else Quality.GOOD
            b.add(tags[i % len(tags)], T0 + i * 37, float(i % 101), q)
            if b.full:
                f = b.flush()
                assert f is not None
                out.append(f)
    return out


def produce(bootstrap: str, topic: str, frames: list[ReadingFrame]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for f in frames:
        p.produce(topic, f.encode(), f.key())
    assert p.flush(30) == 0


ROLLUP_VS_RAW = """
SELECT (SELECT groupArray((tag, bucket, s, g, n, mn, mx, a)) FROM (
          SELECT tag, bucket, sum(samples) s, sum(good) g, sum(count) n, min(min) mn,
                 max(max) mx, round(avgMerge(avg), 6) a
          FROM readings_1m GROUP BY tag, bucket ORDER BY tag, bucket))
     = (SELECT groupArray((tag, bucket, s, g, n, mn, mx, a)) FROM (
          SELECT tag, toStartOfMinute(ts) bucket, count() s, countIf(quality = 0) g,
                 countIf(quality < 2 AND value IS NOT NULL) n, minIf(value, quality < 2) mn,
                 maxIf(value, quality < 2) mx, round(avgIf(value, quality < 2), 6) a
          FROM readings FINAL GROUP BY tag, bucket ORDER BY tag, bucket))
"""


def test_redelivered_readings_are_stored_once_and_rollups_stay_exact(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    first = make_frames(catalog, sources=3, frames=20)
    produce(kafka_bootstrap, topics.readings, first)
    n_first = sum(len(f) for f in first)
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None

    def q(sql: str) -> list[list[Any]]:
        return run_query(chdb_dsn, sql, endpoint).rows

    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "a.json", group="g1",
                      batch_rows=4000)
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= n_first, 60, "readings")
    finally:
        stop_sink(proc)
    # the same frames again, then new ones; a new group reads the topic from the start
    more = make_frames(catalog, sources=3, frames=4, start=20)
    produce(kafka_bootstrap, topics.readings, first[::3] + more)
    n_all = n_first + sum(len(f) for f in more)
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "b.json", group="g2",
                      batch_rows=4000)
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= n_all, 60, "new readings")
    finally:
        final = stop_sink(proc)
    assert final["inserted"]["readings"] == n_all - n_first
    assert final["redelivered"] == n_first + sum(len(f) for f in first[::3])
    # not even a duplicate row waiting for a merge: count() without FINAL is exact
    rows = run_query(chdb_dsn, "SELECT count(), uniqExact(source, epoch, seq) FROM readings")
    assert rows.rows == [[n_all, n_all]]
    rows = run_query(chdb_dsn, "SELECT sum(samples) FROM readings_1h")
    assert rows.rows == [[n_all]]
    assert run_query(chdb_dsn, ROLLUP_VS_RAW).rows == [[True]]
