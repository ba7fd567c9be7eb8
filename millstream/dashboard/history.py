"""A tag's history for the trend: raw readings for short ranges, the rollups for long ones.

The range picks the table, so a chart never asks for more than a few thousand points:
up to :data:`RAW_MAX_MS` the readings themselves, up to :data:`MINUTE_MAX_MS` the 1-minute
rollup (``readings_1m``), beyond it the 1-hour one (``readings_1h``). Anomalies and alarm
episodes of the tag in the range come along as markers. The SQL goes through the query
path that exists (:func:`millstream.query.run_query`: the sink's query server for chDB,
the server for ClickHouse); the tag is checked against the catalog before it is quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from millstream.query import QueryLimits, QueryResult, run_query
from schemas.exceptions import MillstreamError

__all__ = ["MINUTE_MAX_MS", "RAW_MAX_MS", "HistoryError", "HistoryRequest", "fetch_history",
           "resolution_for"]

RAW_MAX_MS = 30 * 60_000  # 30 min: at 10 readings/s, 18,000 points
MINUTE_MAX_MS = 3 * 24 * 3_600_000  # 3 days of minutes: 4,320 points
MAX_RANGE_MS = 400 * 24 * 3_600_000
RAW_LIMIT = 20_000
MARKER_LIMIT = 2_000


class HistoryError(MillstreamError):
    """The history cannot be served; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    tag: str  # a catalog tag path
    start_ms: int
    end_ms: int

    def check(self, known_tags: set[str] | frozenset[str]) -> None:
        if self.tag not in known_tags:
            raise HistoryError(f"tag {self.tag!r} is not in the catalog; pick a tag of the "
                               "plant (its full path, enterprise/site/area/line/machine/tag)")
        if not 0 < self.end_ms - self.start_ms <= MAX_RANGE_MS:
            raise HistoryError(f"the range {self.start_ms}..{self.end_ms} (Unix ms) must be "
                               f"positive and at most {MAX_RANGE_MS // 86_400_000} days")


def resolution_for(span_ms: int) -> str:
    """``raw``, ``1m`` or ``1h``: the finest that keeps the chart to a few thousand points."""
    if span_ms <= RAW_MAX_MS:
        return "raw"
    return "1m" if span_ms <= MINUTE_MAX_MS else "1h"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def series_sql(req: HistoryRequest, resolution: str) -> str:
    tag, lo, hi = _quote(req.tag), int(req.start_ms), int(req.end_ms)
    if resolution == "raw":
        return (f"SELECT toUnixTimestamp64Milli(ts) AS t, value, value AS min, value AS max "
                f"FROM readings WHERE tag = {tag} AND ts >= fromUnixTimestamp64Milli("
                f"toInt64({lo})) AND ts < fromUnixTimestamp64Milli(toInt64({hi})) "
                f"AND quality < 2 AND value IS NOT NULL ORDER BY ts LIMIT {RAW_LIMIT + 1}")
    table = {"1m": "readings_1m", "1h": "readings_1h"}[resolution]
    return (f"SELECT toUnixTimestamp(bucket) * 1000 AS t, avgMerge(avg) AS value, "
            f"min(min) AS min, max(max) AS max FROM {table} WHERE tag = {tag} "
            f"AND bucket >= toDateTime(intDiv({lo}, 1000), 'UTC') "
            f"AND bucket < toDateTime(intDiv({hi} + 999, 1000), 'UTC') "
            f"GROUP BY bucket ORDER BY bucket")


def anomalies_sql(req: HistoryRequest) -> str:
    return (f"SELECT toUnixTimestamp64Milli(window_start) AS t, feature, value, score, "
            f"threshold FROM anomalies WHERE tag = {_quote(req.tag)} AND window_start >= "
            f"fromUnixTimestamp64Milli(toInt64({int(req.start_ms)})) AND window_start < "
            f"fromUnixTimestamp64Milli(toInt64({int(req.end_ms)})) ORDER BY window_start "
            f"LIMIT {MARKER_LIMIT}")


def alarms_sql(req: HistoryRequest) -> str:
    return (f"SELECT alarm_id, toUnixTimestamp64Milli(min(started_at)) AS t, "
            f"argMax(severity, version) AS severity, argMax(message, version) AS message "
            f"FROM alarms WHERE has(tags, {_quote(req.tag)}) AND started_at >= "
            f"fromUnixTimestamp64Milli(toInt64({int(req.start_ms)})) AND started_at < "
            f"fromUnixTimestamp64Milli(toInt64({int(req.end_ms)})) GROUP BY alarm_id "
            f"ORDER BY t LIMIT {MARKER_LIMIT}")


def _objects(result: QueryResult) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def fetch_history(dsn: str, req: HistoryRequest, *, timeout_s: float = 20.0) -> dict[str, Any]:
    """The series and markers of ``req`` (blocking: run it off the event loop).

    For a chDB DSN only the sink's query server is asked (the dashboard never opens the
    data directory itself: that would lock the sink out of it)."""
    resolution = resolution_for(req.end_ms - req.start_ms)
    limits = QueryLimits(max_execution_s=timeout_s, max_rows=RAW_LIMIT + 1)

    def ask(sql: str) -> QueryResult:
        try:
            return run_query(dsn, sql, timeout=timeout_s + 5, limits=limits,
                             open_chdb=False)
        except MillstreamError as exc:
            raise HistoryError(f"the history of {req.tag} is not available: {exc}") from exc

    series = ask(series_sql(req, resolution))
    rows = series.rows[:RAW_LIMIT]
    return {
        "tag": req.tag, "from": req.start_ms, "to": req.end_ms, "resolution": resolution,
        "truncated": len(series.rows) > RAW_LIMIT,
        "t": [r[0] for r in rows], "value": [r[1] for r in rows],
        "min": [r[2] for r in rows], "max": [r[3] for r in rows],
        "anomalies": _objects(ask(anomalies_sql(req))),
        "alarms": _objects(ask(alarms_sql(req))),
    }
