"""The analyst's side of ``millstream query``: run SQL against millstream's ClickHouse.

For a ``chdb://`` DSN the data directory can be open in one process only, so while a sink
owns it the query goes to the sink's loopback query server (found through the endpoint
file); when no sink runs, chDB is opened directly. ``http(s)://`` DSNs go to the server.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.exceptions import MillstreamError
from sinks.exceptions import QueryRejected
from sinks.query_server import (
    LIMIT_ROWS_HEADER,
    LIMIT_SECONDS_HEADER,
    chdb_path,
    check_read_only,
    endpoint_file_for,
    json_safe,
    locked_by_another_process,
    query_settings,
)

if TYPE_CHECKING:
    from sinks.chclient import ClientOptions

__all__ = [
    "QueryError",
    "QueryLimits",
    "QueryResult",
    "endpoint_file_for",
    "format_csv",
    "format_json",
    "format_table",
    "run_query",
]

logger = logging.getLogger(__name__)


class QueryError(MillstreamError):
    """A query could not be run; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names, ClickHouse type names, and JSON-safe rows."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """How long a query may run and how many rows it may return; past either it fails
    with ClickHouse's message naming the limit (TIMEOUT_EXCEEDED, TOO_MANY_ROWS)."""

    max_execution_s: float = 60.0
    max_rows: int = 100_000


def run_query(dsn: str, sql: str, endpoint_file: Path | None = None,
              timeout: float = 300.0, *, limits: QueryLimits | None = None,
              options: ClientOptions | None = None, open_chdb: bool = True) -> QueryResult:
    """Run one statement; through the sink's query server when it owns the chDB directory.

    ``limits`` apply to the query (the server's own limits apply too: the tighter wins);
    ``options`` are the user, password and TLS settings for an ``http(s)://`` DSN;
    ``open_chdb`` False: never open the chDB directory in this process (a long-running
    reader such as the dashboard would hold it), only ask the sink's query server."""
    path = chdb_path(dsn)
    if path is None and not dsn.startswith("chdb:"):
        return _direct(dsn, sql, limits, options)
    endpoint = endpoint_file or endpoint_file_for(dsn)
    if endpoint is not None and endpoint.exists():
        answered = _via_server(endpoint, sql, timeout, limits)
        if answered is not None:
            return answered
    if not open_chdb:
        raise QueryError(
            f"no `millstream sink` serves queries for the chDB directory {path or dsn} "
            f"(endpoint file {endpoint}: {_owner(endpoint)}); start the sink (or "
            "`millstream demo`), or point MILLSTREAM_CLICKHOUSE_DSN at a ClickHouse server")
    if path is not None and not path.exists():
        raise QueryError(f"there is no chDB database at {path} yet; start `millstream sink` "
                         "(or `millstream demo`) to create it, or set MILLSTREAM_CLICKHOUSE_DSN")
    if path is not None and locked_by_another_process(path):
        raise QueryError(
            f"another process (a `millstream sink` or `millstream demo`) owns the chDB "
            f"directory {path} and its query server does not answer (endpoint file "
            f"{endpoint}: {_owner(endpoint)}); pass the endpoint file that process wrote, "
            "or stop it and query again"
        )
    return _direct(dsn, sql, limits, options)


def _owner(endpoint: Path | None) -> str:
    try:
        doc = json.loads(endpoint.read_text()) if endpoint is not None else None
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return "missing"
    return f"pid {doc.get('pid')} at {doc.get('url')} does not answer"


def _via_server(endpoint: Path, sql: str, timeout: float,
                limits: QueryLimits | None) -> QueryResult | None:
    """The server's answer; None if the endpoint file is stale or its server is gone."""
    try:
        doc = json.loads(endpoint.read_text())
        url = str(doc["url"]).rstrip("/") + "/query"
    except (OSError, ValueError, KeyError, TypeError):
        logger.debug("ignoring unreadable endpoint file %s", endpoint)
        return None
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if limits is not None:
        headers[LIMIT_SECONDS_HEADER] = f"{limits.max_execution_s:g}"
        headers[LIMIT_ROWS_HEADER] = str(limits.max_rows)
    req = urllib.request.Request(url, data=sql.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            err = exc.reason
        raise QueryError(f"the query failed: {err}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.debug("query server %s does not answer (%s); opening chDB directly", url, exc)
        return None
    return QueryResult(list(body["columns"]), list(body["types"]), list(body["rows"]))


def _direct(dsn: str, sql: str, limits: QueryLimits | None,
            options: ClientOptions | None) -> QueryResult:
    """Open the database ourselves. Read-only, as through the sink's query server."""
    from sinks.chclient import open_client  # only here: the server path needs no client
    from sinks.exceptions import SinkError

    try:
        sql = check_read_only(sql)
    except QueryRejected as exc:
        raise QueryError(str(exc)) from exc
    limits = limits or QueryLimits()
    settings: dict[str, str] = query_settings(limits.max_execution_s, limits.max_rows)
    # chDB honours readonly=1 (INTO OUTFILE aside, which check_read_only refuses); a server
    # user may already be read-only and then may not set it, so only for chdb://
    if not dsn.startswith("chdb:"):
        del settings["readonly"]
    try:
        client = open_client(dsn, options, shared=True)
    except SinkError as exc:
        raise QueryError(str(exc)) from exc
    try:
        result = client.query(sql, settings=settings)
        return QueryResult(list(result.column_names), [t.name for t in result.column_types],
                           [[json_safe(v) for v in row] for row in result.result_rows])
    except Exception as exc:
        raise QueryError(f"the query failed: {str(exc).strip()[:2000]}") from exc
    finally:
        client.close()


# -- output formats ---------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def format_table(result: QueryResult) -> str:
    """An aligned text table; numbers right-aligned, with a row count."""
    cells = [[_text(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                   for r in result.rows if r[i] is not None) for i in range(len(result.columns))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(list(result.columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    n = len(result.rows)
    out.append(f"({n} row{'s' if n != 1 else ''})")
    return "\n".join(out)


def format_csv(result: QueryResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, list | dict) else v
                         for v in row])
    return buf.getvalue()


def format_json(result: QueryResult) -> str:
    """A JSON array of objects, one per row."""
    return json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows],
                      indent=2)
