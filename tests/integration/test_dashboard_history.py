"""The dashboard's history on a real chDB through the sink's query server: raw readings, the
1-minute and the 1-hour rollups (filled by ClickHouse's materialised views), and markers."""

from __future__ import annotations

import threading

import pytest

from millstream.dashboard.history import HistoryError, HistoryRequest, fetch_history
from millstream.query import endpoint_file_for
from schemas.clickhouse import ddl_statements
from sinks.clickhouse import open_client
from sinks.query_server import QueryServer

pytestmark = pytest.mark.integration

TAG = "acme/plant1/machining/line1/cnc-01/spindle_temp"
T0 = 1_763_769_600_000  # 2025-11-22 00:00:00 UTC, on the hour


def test_raw_minutes_and_hours_agree_with_the_readings(chdb_dsn: str) -> None:
    # one reading every 10 s for 3 hours: value = minute of the day (so each minute's mean
    # is known), one BAD reading that must not count, an anomaly and an alarm episode
    ts = [T0 + i * 10_000 for i in range(3 * 360)]
    values = [float((t - T0) // 60_000) for t in ts]
    quality = [0] * len(ts)
    quality[5] = 2
    values[5] = 1e9
    client = open_client(chdb_dsn)
    endpoint = endpoint_file_for(chdb_dsn)
    try:
        for stmt in ddl_statements():
            client.command(stmt)
        n = len(ts)
        client.insert("readings", [[TAG] * n, ts, values, quality, ["s"] * n, [1] * n,
                                   list(range(1, n + 1))],
                      column_names=["tag", "ts", "value", "quality", "source", "epoch", "seq"],
                      column_oriented=True)
        client.insert("anomalies", [["a1"], [TAG], [T0 + 120_000], [T0 + 121_000], ["mean"],
                                    [2.0], [9.0], [6.0], ["sad"], [T0 + 122_000]],
                      column_names=["anomaly_id", "tag", "window_start", "window_end",
                                    "feature", "value", "score", "threshold", "detector",
                                    "detected_at"], column_oriented=True)
        client.insert("alarms", [["e1", "e1"], ["m", "m"], [[TAG], [TAG]], ["low", "high"],
                                 ["active", "acknowledged"], ["warm", "hot"],
                                 [T0 + 120_000] * 2, [T0 + 130_000] * 2, [1, 2]],
                      column_names=["alarm_id", "asset", "tags", "severity", "state",
                                    "message", "started_at", "updated_at", "version"],
                      column_oriented=True)
        server = QueryServer(client, threading.Lock(), dsn=chdb_dsn, endpoint_file=endpoint)
        server.start()
        try:
            raw = fetch_history(chdb_dsn, HistoryRequest(TAG, T0, T0 + 10 * 60_000))
            assert raw["resolution"] == "raw"
            assert raw["t"] == [t for t in ts if t < T0 + 600_000 and t != ts[5]]
            assert 1e9 not in raw["value"]
            assert raw["anomalies"] == [{"t": T0 + 120_000, "feature": "mean", "value": 2.0,
                                         "score": 9.0, "threshold": 6.0}]
            assert raw["alarms"] == [{"alarm_id": "e1", "t": T0 + 120_000,
                                      "severity": "high", "message": "hot"}]  # newest version

            minutes = fetch_history(chdb_dsn, HistoryRequest(TAG, T0, T0 + 3 * 3_600_000))
            assert minutes["resolution"] == "1m" and len(minutes["t"]) == 180
            assert minutes["t"][:2] == [T0, T0 + 60_000]
            assert minutes["value"][:3] == [0.0, 1.0, 2.0]  # the BAD reading left out
            assert minutes["max"][0] == 0.0

            hours = fetch_history(chdb_dsn, HistoryRequest(TAG, T0, T0 + 4 * 86_400_000))
            assert hours["resolution"] == "1h" and hours["t"] == [
                T0, T0 + 3_600_000, T0 + 7_200_000]
            assert hours["value"][1] == pytest.approx(89.5)  # minutes 60..119
            assert (hours["min"][1], hours["max"][1]) == (60.0, 119.0)
        finally:
            server.stop()
        with pytest.raises(HistoryError, match="no `millstream sink` serves queries"):
            fetch_history(chdb_dsn, HistoryRequest(TAG, T0, T0 + 60_000))  # never opens chDB
    finally:
        client.close()
