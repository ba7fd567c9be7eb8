"""The analysts' side: every SQL block of the README's "Worked SQL for analysts" runs on a
populated chDB and answers; a deliberately slow query is stopped at its limit and does not
hold up the sink's inserts; the row limit is enforced."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from millstream.query import QueryError, QueryLimits, endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.status import read_status
from schemas.topics import Topics
from sinks.chclient import open_client
from sinks.migrations import migrate
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for
from tests.integration.test_sink_outage import Plant

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SLOW = "SELECT count() FROM numbers(100000000000000) WHERE sipHash64(number) % 7 = 3"


def readme_sql() -> list[str]:
    text = README.read_text()
    section = text.split("## Worked SQL for analysts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def populate(dsn: str, catalog: Catalog) -> None:
    now = now_ms()
    client = open_client(dsn)
    try:
        migrate(client)
        rows: list[list[Any]] = []
        seq = 0
        for short in ("cnc-01/spindle_temp", "cnc-01/running", "cnc-01/part_count",
                      "press-01/running"):
            name = short.split("/")[1]
            tag = catalog.resolve(short)
            unit = catalog.info(tag).spec.unit
            for i in range(360):  # 6 h, one reading a minute
                seq += 1
                value = {"spindle_temp": 60 + i % 7, "running": float(i % 10 != 0),
                         "part_count": float(i // 3)}[name]
                rows.append([tag, now - (360 - i) * 60_000, value, 0, "opcua-sim", 1, seq,
                             "", unit])
        seq += 1
        rows.append([catalog.resolve("cnc-01/spindle_temp"), now - 90_000, None, 2,
                     "opcua-sim", 1, seq, "gap: connection lost", "degC"])
        client.insert("readings", rows, column_names=["tag", "ts", "value", "quality", "source",
                                                      "epoch", "seq", "status", "unit"])
        tag = catalog.resolve("cnc-01/spindle_temp")
        client.insert("anomalies", [[f"an-{i}", tag, now - i * 3_600_000,
                                     now - i * 3_600_000 + 10_000, "mean", 90.0, 7.5 + i, 6.0,
                                     "river", now] for i in range(3)],
                      column_names=["anomaly_id", "tag", "window_start", "window_end", "feature",
                                    "value", "score", "threshold", "detector", "detected_at"])
        client.insert("alarms", [["al-1", "cnc-01", [tag], "high", "cleared", "too hot",
                                  now - 7_200_000, now - 3_600_000, now, 2]],
                      column_names=["alarm_id", "asset", "tags", "severity", "state", "message",
                                    "started_at", "ended_at", "updated_at", "version"])
        client.insert("commands", [["cmd-1", "overheat", "cnc-01", "cnc-01/spindle_speed_sp",
                                    1000.0, "too hot", now - 60_000, now]],
                      column_names=["command_id", "rule", "machine", "setpoint", "value",
                                    "reason", "issued_at", "expires_at"])
        client.insert("command_results", [["cmd-1", "cnc-01/spindle_speed_sp", 1000.0, 1000.0,
                                           "applied", "ok", now - 59_000]],
                      column_names=["command_id", "setpoint", "requested", "readback",
                                    "status", "detail", "executed_at"])
    finally:
        client.close()


def _overlap_ms(shift_start: str, lo: int, hi: int) -> int:
    """How much of [lo, hi) (Unix ms) falls into the 8 h shift starting at ``shift_start``."""
    start = int(datetime.fromisoformat(shift_start).timestamp() * 1000)
    return max(0, min(start + 8 * 3_600_000, hi) - max(start, lo))


def test_every_worked_query_in_the_readme_answers(chdb_dsn: str, catalog: Catalog) -> None:
    queries = readme_sql()
    assert len(queries) == 7
    populate(chdb_dsn, catalog)
    for sql in queries:
        result = run_query(chdb_dsn, sql)
        assert result.rows, sql  # each finds the data populate() wrote
    oee = next(q for q in queries if "part_count" in q)
    rows = run_query(chdb_dsn, oee).rows
    assert {r[0] for r in rows} == {"cnc-01", "press-01"}
    # populate() wrote the last 6 h: a shift holding only a few of those minutes (at the
    # start of a shift) averages too few samples to say anything, so judge the full ones
    end = now_ms()
    full = [r for r in rows if _overlap_ms(r[1], end - 360 * 60_000, end) >= 60 * 60_000]
    assert full and all(0.85 <= r[2] <= 0.95 for r in full)
    # one part every 3 minutes: a shift's parts follow how much of the 6 h it holds (which
    # depends on the time of day the test runs)
    for r in (r for r in rows if r[0] == "cnc-01"):  # populate() counts parts on the CNC
        minutes = _overlap_ms(r[1], end - 360 * 60_000, end) / 60_000
        assert abs((r[3] or 0) - minutes / 3) <= 2, (r, minutes)
    assert sum(r[3] or 0 for r in rows if r[0] == "cnc-01") >= 110
    with pytest.raises(QueryError, match=r"TOO_MANY_ROWS|Limit for result exceeded"):
        run_query(chdb_dsn, "SELECT number FROM numbers(1000)", limits=QueryLimits(60, 100))


def test_a_slow_query_stops_at_its_limit_and_inserts_go_on(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    status = tmp_path / "sink.json"
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    plant = Plant(kafka_bootstrap, topics.readings, catalog)
    proc = start_sink(kafka_bootstrap, topics, chdb_dsn, status)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def watch() -> None:  # the sink's insert counter while the query runs
        while not done.wait(0.2):
            st = read_status(status) or {}
            samples.append((time.monotonic(), st.get("inserted", {}).get("readings", 0)))

    try:
        wait_for(endpoint.exists, 60, "the query endpoint file")
        plant.start()
        wait_for(lambda: (read_status(status) or {}).get("inserted", {}).get("readings", 0)
                 > 2000, 30, "the first inserts")
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        with pytest.raises(QueryError, match=r"TIMEOUT_EXCEEDED|Timeout exceeded"):
            run_query(chdb_dsn, SLOW, endpoint, limits=QueryLimits(max_execution_s=8))
        took = time.monotonic() - t0
        done.set()
        watcher.join(5)
    finally:
        done.set()
        plant.stop.set()
        stop_sink(proc)
    assert 7 <= took < 30, took
    during = [(t, n) for t, n in samples if t0 <= t <= t0 + took]
    grew = [t for (t, n), (_, m) in pairwise(during) if m > n]
    stall = max(b - a for a, b in pairwise([t0, *grew, t0 + took]))
    print(f"\nslow query stopped after {took:.1f}s; inserts went on "
          f"({during[-1][1] - during[0][1]} readings, longest pause {stall:.1f}s)")
    # before, the query held the sink's only connection: no insert for the whole 8 s
    assert len(grew) >= 3 and stall < 4.0
