"""The end-of-run summary, computed from ClickHouse and the connectors' sequence numbers.

``lost`` is not assumed: for every (source, epoch) a connector ran, it produced readings
numbered 1..produced; whatever number in that range has no row in ``readings`` is lost.
``readings_by_source`` is the stored ones of each source. ``alarms`` counts alarm episodes
(one per incident and machine), ``alarms_by_machine`` splits them, ``alarm_changes`` counts
their state changes (alarm_log), next to the raw ``anomalies`` they came from.
``spc_violations_by_rule`` counts the control charts' rule violations by rule, and
``spc_cpk`` is each characteristic's newest Cpk (``machine/tag``) of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from millstream.query import endpoint_file_for, run_query

__all__ = ["SourceRun", "summarize"]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True, slots=True)
class SourceRun:
    """What one connector said it did: readings 1..produced of (source, epoch)."""

    source: str
    epoch: int
    produced: int
    delivered: int


def _scalar(dsn: str, sql: str) -> int:
    rows = run_query(dsn, sql, endpoint_file_for(dsn)).rows
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _by_machine(dsn: str, since: str) -> dict[str, int]:
    rows = run_query(dsn, "SELECT splitByChar('/', asset)[-1] AS m, uniqExact(alarm_id) "
                          f"FROM alarms WHERE started_at >= {since} GROUP BY m ORDER BY m",
                     endpoint_file_for(dsn)).rows
    return {str(m): int(n) for m, n in rows}


def _spc(dsn: str, since: str) -> dict[str, Any]:
    by_rule = run_query(dsn, "SELECT rule, uniqExact(violation_id) FROM spc_violations "
                             f"WHERE detected_at >= {since} GROUP BY rule ORDER BY rule",
                        endpoint_file_for(dsn)).rows
    cpk = run_query(dsn, "SELECT tag, argMax(cpk, computed_at) FROM spc_capability FINAL "
                         f"WHERE computed_at >= {since} AND cpk IS NOT NULL "
                         "GROUP BY tag ORDER BY tag", endpoint_file_for(dsn)).rows
    return {"spc_violations": sum(int(n) for _, n in by_rule),
            "spc_violations_by_rule": {str(r): int(n) for r, n in by_rule},
            "spc_cpk": {"/".join(str(t).split("/")[-2:]): round(float(c), 3)
                        for t, c in cpk}}


def summarize(dsn: str, runs: list[SourceRun], since_ms: int) -> dict[str, Any]:
    produced = stored = rows = 0
    by_source: dict[str, int] = {}
    for r in runs:
        if not _NAME.match(r.source):
            raise ValueError(f"unexpected source name {r.source!r}")
        produced += r.produced
        by_source.setdefault(r.source, 0)
        if r.produced == 0:
            continue
        where = (f"source = '{r.source}' AND epoch = {int(r.epoch)} "
                 f"AND seq BETWEEN 1 AND {int(r.produced)}")
        n = _scalar(dsn, f"SELECT uniqExact(seq) FROM readings WHERE {where}")
        stored += n
        by_source[r.source] += n
        rows += _scalar(dsn, f"SELECT count() FROM readings FINAL WHERE {where}")
    since = f"fromUnixTimestamp64Milli({int(since_ms)}, 'UTC')"
    return {
        "readings_produced": produced,
        "readings_in_clickhouse": stored,
        "readings_by_source": dict(sorted(by_source.items())),
        "aggregates": _scalar(dsn, f"SELECT count() FROM aggregates FINAL "
                                   f"WHERE window_start >= {since}"),
        "anomalies": _scalar(dsn, f"SELECT count() FROM anomalies FINAL "
                                  f"WHERE detected_at >= {since}"),
        "alarms": _scalar(dsn, f"SELECT uniqExact(alarm_id) FROM alarms "
                               f"WHERE started_at >= {since}"),
        "alarms_by_machine": _by_machine(dsn, since),
        "alarm_changes": _scalar(dsn, f"SELECT count() FROM alarm_log FINAL "
                                      f"WHERE updated_at >= {since}"),
        "commands_executed": _scalar(dsn, f"SELECT count() FROM command_results FINAL "
                                          f"WHERE status = 'applied' AND executed_at >= {since}"),
        "lost": produced - stored,
        "duplicates": rows - stored,
        "commands_issued": _scalar(dsn, f"SELECT count() FROM commands FINAL "
                                        f"WHERE issued_at >= {since}"),
        "commands_refused_or_failed": _scalar(
            dsn, f"SELECT count() FROM command_results FINAL "
                 f"WHERE status != 'applied' AND executed_at >= {since}"),
        "dead_letters": _scalar(dsn, f"SELECT count() FROM deadletter FINAL WHERE at >= {since}"),
        **_spc(dsn, since),
    }
