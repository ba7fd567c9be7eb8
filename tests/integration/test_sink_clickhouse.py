"""The ClickHouse sink on the real session Kafka and a real chDB, run in a subprocess.

chDB lets one process open a directory, so the sink runs in its own process and the test
reads through the sink's query server (millstream.query), then, after the sink stopped,
by opening chDB directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from millstream.query import QueryError, endpoint_file_for, run_query
from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, Command, CommandResult
from schemas.readings import FrameBuilder, Quality
from schemas.status import read_status
from schemas.topics import Topics
from sinks.batch import BatchPolicy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_TAG = "acme/plant1/nowhere/line9/ghost-01/temp"
SINK_SCRIPT = """
import json, logging, signal, sys, threading
from pathlib import Path
from schemas.catalog import load_catalog
from schemas.topics import Topics
from sinks.base import BatchPolicy
from sinks.run import run_sink
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
a = json.loads(sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
final = run_sink(load_catalog(), bootstrap=a["bootstrap"], topics=Topics(a["prefix"]),
                 dsn=a["dsn"], group_id=a["group"], status_file=Path(a["status"]), stop=stop,
                 policy=BatchPolicy(batch_rows=a["batch_rows"],
                                    max_pending_rows=a["max_pending_rows"]))
print(json.dumps(final))
"""


def start_sink(kafka_bootstrap: str, topics: Topics, dsn: str, status: Path, *,
               group: str = "sink-test", batch_rows: int = 50_000,
               max_pending_rows: int = BatchPolicy().max_pending_rows
               ) -> subprocess.Popen[str]:
    args = {"bootstrap": kafka_bootstrap, "prefix": topics.prefix, "dsn": dsn, "group": group,
            "status": str(status), "batch_rows": batch_rows,
            "max_pending_rows": max_pending_rows}
    return subprocess.Popen([sys.executable, "-c", SINK_SCRIPT, json.dumps(args)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def stop_sink(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    final: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return final


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def produce_readings(bootstrap: str, topics: Topics, catalog: Catalog, *, sources: int,
                     frames: int, per_frame: int = 1000) -> int:
    tags = list(catalog.tags())
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    total = 0
    for s in range(sources):
        b = FrameBuilder(f"test-src-{s}", epoch=1_763_760_000_000 + s, max_readings=per_frame)
        for i in range(frames * per_frame):
            b.add(tags[i % len(tags)], 1_763_760_000_000 + i * 10, float(i % 997))
            if b.full:
                f = b.flush()
                assert f is not None
                p.produce(topics.readings, f.encode(), f.key())
                p.poll(0)
        total += b.produced
    assert p.flush(30) == 0
    return total


def produce_events_and_garbage(bootstrap: str, topics: Topics, catalog: Catalog) -> None:
    tag = next(iter(catalog.tags()))
    now = 1_763_760_000_000
    p = Producer({"bootstrap.servers": bootstrap})
    events: list[tuple[str, Aggregate | Anomaly | Command | CommandResult]] = [
        (topics.aggregates, Aggregate(tag, now, now + 1000, 10, 1.0, 3.0, 2.0, 0.5, 1.0, 3.0)),
        (topics.anomalies, Anomaly("an-1", tag, now, now + 1000, "mean", 9.0, 12.0, 6.0,
                                   "river.anomaly.StandardAbsoluteDeviation", now + 1500)),
        (topics.commands, Command("cmd-1", "overheat", "cnc-01", "cnc-01/spindle_speed_sp",
                                  1000.0, "too hot", now, now + 60_000)),
        (topics.command_results, CommandResult("cmd-1", "cnc-01/spindle_speed_sp", 1000.0,
                                               1000.0, "applied", "ok", now + 100)),
    ]
    for topic, ev in events:
        p.produce(topic, ev.encode(), ev.key())
    agg_frame = AggregateFrame("opcua-sim", 60_000, [tag, tag], [now, now + 60_000], [5, 7],
                           [1.0, 2.0], [3.0, 4.0], [2.0, 3.0], [0.5, 0.5], [1.0, 2.0],
                           [3.0, 4.0], [1.0, 0.75])
    p.produce(topics.aggregates, agg_frame.encode(), agg_frame.key())  # the worker format
    ghost = FrameBuilder("ghost-src", epoch=1)
    ghost.add(UNKNOWN_TAG, now, 1.0)
    # the known readings of the same frame are stored, with their optional columns
    ghost.add(tag, now, 2.0, Quality.UNCERTAIN, server_ts=now + 5,
              status="UncertainLastUsableValue")
    ghost.add(tag, now + 1, None, text="LOT-42")
    frame = ghost.flush()
    assert frame is not None
    p.produce(topics.readings, frame.encode(), frame.key())
    p.produce(topics.readings, b"{this is not json", b"intruder")
    p.produce(topics.aggregates, json.dumps({"schema": "nope"}).encode())
    p.produce(topics.deadletter, b"a malformed dead letter")
    assert p.flush(10) == 0


def test_sink_stores_everything_once_and_dead_letters_bad_input(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    status = tmp_path / "sink.json"
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    produced = produce_readings(kafka_bootstrap, topics, catalog, sources=3, frames=100)
    produce_events_and_garbage(kafka_bootstrap, topics, catalog)
    expected = produced + 2  # + the known readings of the ghost frame
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, status)
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        t0 = time.monotonic()

        def q(sql: str) -> list[list[Any]]:
            return run_query(chdb_dsn, sql, endpoint).rows

        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= expected, 120,
                 "all readings")
        elapsed = time.monotonic() - t0
        wait_for(lambda: q("SELECT count() FROM deadletter")[0][0] >= 3, 30, "dead letters")
        assert q("SELECT count(), uniqExact(source, epoch, seq) FROM readings") == [
            [expected, expected]]
        assert q(f"SELECT count() FROM readings WHERE tag = '{UNKNOWN_TAG}'") == [[0]]
        assert q("SELECT value, quality, toUnixTimestamp64Milli(server_ts), status, text "
                 "FROM readings WHERE source = 'ghost-src' ORDER BY ts") == [
            [2.0, 1, 1_763_760_000_005, "UncertainLastUsableValue", None],
            [None, 0, None, "", "LOT-42"]]
        for table in ("anomalies", "commands", "command_results"):
            assert q(f"SELECT count() FROM {table}") == [[1]], table
        assert q("SELECT window_ms, count, toUnixTimestamp64Milli(window_end) - "
                 "toUnixTimestamp64Milli(window_start), good_share FROM aggregates "
                 "ORDER BY window_ms, window_start") == [
            [1000, 10, 1000, None], [60_000, 5, 60_000, 1.0], [60_000, 7, 60_000, 0.75]]
        assert q("SELECT status, readback FROM command_audit") == [["applied", 1000.0]]
        assert q("SELECT reason, topic FROM deadletter ORDER BY reason") == [
            ["not-json", topics.readings], ["unknown-tag", topics.readings],
            ["wrong-schema", topics.aggregates]]
        res = run_query(chdb_dsn, "SELECT ts FROM readings ORDER BY ts LIMIT 1", endpoint)
        assert res.types == ["DateTime64(3, 'UTC')"]
        assert res.rows == [["2025-11-21T21:20:00+00:00"]]
        with pytest.raises(QueryError, match="read-only"):
            run_query(chdb_dsn, "DROP TABLE readings", endpoint)
        with pytest.raises(QueryError, match=r"UNKNOWN_TABLE|does not exist"):
            run_query(chdb_dsn, "SELECT * FROM nope", endpoint)
        wait_for(lambda: (read_status(status) or {}).get("inserted", {}).get("readings", 0)
                 >= expected, 10, "the status file")
        st = read_status(status) or {}
        print(f"\nsink: {expected} readings stored in {elapsed:.2f}s end-to-end "
              f"({expected / elapsed:,.0f}/s); insert rate {st['insert_rows_per_s']}")
    finally:
        final = stop_sink(proc)
    assert not endpoint.exists()
    assert final["inserted"]["readings"] >= expected
    assert final["deadlettered"] == 3 and final["deadletter_malformed"] == 1
    assert final["insert_errors"] == 0 and final["pending_rows"] == 0
    # the sink is gone: the query opens chDB directly
    direct = run_query(chdb_dsn, "SELECT count(), uniqExact(source, epoch, seq) FROM readings")
    assert direct.rows == [[expected, expected]]
    assert run_query(chdb_dsn, "SELECT count() FROM deadletter").rows == [[3]]


def test_restart_resumes_from_committed_offsets_and_kill_loses_nothing(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    status = tmp_path / "sink.json"
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    first = produce_readings(kafka_bootstrap, topics, catalog, sources=1, frames=50)
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, status, batch_rows=5000)
    wait_for(lambda: (read_status(status) or {}).get("inserted", {}).get("readings", 0)
             >= 10_000, 60, "some readings inserted")
    proc.kill()  # no drain, no final commit: redelivery must fill the rest
    proc.wait(30)
    endpoint.unlink(missing_ok=True)  # a killed owner leaves its endpoint file behind
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, status, batch_rows=5000)
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        wait_for(lambda: run_query(chdb_dsn, "SELECT uniqExact(source, epoch, seq) "
                                   "FROM readings", endpoint).rows == [[first]], 60,
                 "every reading after the restart")
    finally:
        final = stop_sink(proc)
    assert final["insert_errors"] == 0
    # a clean restart with the same group inserts nothing more: its offsets were committed
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, status, batch_rows=5000)
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        time.sleep(3)
    finally:
        final = stop_sink(proc)
    assert final["inserted"]["readings"] == 0
    rows = run_query(chdb_dsn, "SELECT count() FROM readings FINAL").rows
    assert rows == [[first]]


def test_second_owner_is_told_who_owns_the_directory(
    kafka_bootstrap: str, topics: Topics, chdb_dsn: str, tmp_path: Path
) -> None:
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json")
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        code = ("import sys\nfrom millstream.query import run_query, QueryError\n"
                "try:\n    run_query(sys.argv[1], 'SELECT 1', __import__('pathlib').Path("
                "sys.argv[2]))\nexcept QueryError as e:\n    print(e)\n")
        out = subprocess.run([sys.executable, "-c", code, chdb_dsn, str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        assert "owns the chDB directory" in out and "query server does not answer" in out
    finally:
        stop_sink(proc)
