"""A row that decodes but that ClickHouse refuses: dead-lettered with the database's
message while every other row of its batch is stored (real Kafka, real chDB)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from millstream.query import endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.readings import FrameBuilder
from schemas.topics import Topics
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for

pytestmark = pytest.mark.integration

T0 = 1_793_000_000_000


def test_poison_row_is_dead_lettered_and_the_rest_stored(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    tags = list(catalog.tags())
    p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    b = FrameBuilder("poison-src", epoch=1, max_readings=500)
    poison_seq = 0
    for i in range(5000):
        # a device whose clock fell back to 1970: the frame is valid, the row is not
        ts = 0 if i == 2345 else T0 + i * 10
        b.add(tags[i % len(tags)], ts, float(i))
        if ts == 0:
            poison_seq = b.next_seq + b.pending - 1
        if b.full:
            f = b.flush()
            assert f is not None
            p.produce(topics.readings, f.encode(), f.key())
    assert p.flush(30) == 0
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json")
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")

        def q(sql: str) -> list[list[Any]]:
            return run_query(chdb_dsn, sql, endpoint).rows

        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= 4999, 60, "the readings")
        wait_for(lambda: q("SELECT count() FROM deadletter")[0][0] >= 1, 30, "the dead letter")
        assert q(f"SELECT count(), uniqExact(seq), countIf(seq = {poison_seq}) "
                 "FROM readings") == [[4999, 4999, 0]]
        [[stage, reason, detail, payload]] = q(
            "SELECT stage, reason, detail, payload FROM deadletter")
        assert (stage, reason) == ("sink-insert", "insert-refused")
        assert "VIOLATED_CONSTRAINT" in str(detail) and "ts_plausible" in str(detail)
        letter = json.loads(str(payload))
        assert letter["table"] == "readings"
        assert [(r["seq"], r["ts"]) for r in letter["rows"]] == [(poison_seq, 0)]
    finally:
        final = stop_sink(proc)
    assert final["refused_rows"] == 1 and final["insert_errors"] == 0
    assert final["inserted"]["readings"] == 4999 and final["pending_rows"] == 0
