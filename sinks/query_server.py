"""Read-only SQL over loopback HTTP, served by the process that owns a chDB directory.

chDB lets one process open a data directory, so while the sink owns it, the query CLI and
the dashboard send ``POST /query`` (the SQL as the body) here and get
``{"columns": [...], "types": [...], "rows": [[...], ...]}`` or HTTP 400 ``{"error": ...}``.
The server writes ``{"url", "pid", "dsn"}`` to an endpoint file next to the directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import logging
import math
import os
import re
import threading
from decimal import Decimal
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.exceptions import QueryRejected

__all__ = [
    "LIMIT_ROWS_HEADER",
    "LIMIT_SECONDS_HEADER",
    "READ_ONLY_KEYWORDS",
    "QueryServer",
    "chdb_path",
    "check_read_only",
    "endpoint_file_for",
    "json_safe",
    "locked_by_another_process",
    "query_settings",
]

logger = logging.getLogger(__name__)

READ_ONLY_KEYWORDS = frozenset({"SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH", "EXISTS"})
_MAX_BODY = 1 << 20
# a client's own (tighter) limits for one query
LIMIT_SECONDS_HEADER = "X-Millstream-Max-Execution-S"
LIMIT_ROWS_HEADER = "X-Millstream-Max-Rows"
_LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`"
                      r"|--[^\n]*|#[^\n]*|/\*.*?\*/", re.S)


def query_settings(max_execution_s: float, max_rows: int) -> dict[str, str]:
    """Settings of an analyst's query: read-only, at most this long and this many rows
    (the query fails with a message naming the limit rather than running on)."""
    return {"readonly": "1", "max_execution_time": f"{max_execution_s:g}",
            "timeout_overflow_mode": "throw", "max_result_rows": str(max_rows),
            "result_overflow_mode": "throw"}


def chdb_path(dsn: str) -> Path | None:
    """The directory of a ``chdb://PATH`` DSN; None for other DSNs and in-memory chDB."""
    if not dsn.startswith("chdb://"):
        return None
    path = dsn[len("chdb://"):].split("?", 1)[0]
    return None if path in ("", "memory", ":memory:") else Path(path)


def locked_by_another_process(path: Path) -> bool:
    """True when another process holds the chDB directory (its ``status`` file is locked)."""
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def endpoint_file_for(dsn: str) -> Path | None:
    """Where the owner of a chDB directory advertises its query server: ``PATH.query.json``."""
    path = chdb_path(dsn)
    return path.with_name(path.name + ".query.json") if path is not None else None


def check_read_only(sql: str) -> str:
    """The statement without trailing semicolons, or :class:`QueryRejected` if it could write."""
    code = _LITERAL.sub(lambda m: " " if m.group().startswith(("-", "#", "/")) else "''", sql)
    code = code.strip().rstrip(";").strip()
    if not code:
        raise QueryRejected(sql, "the query is empty")
    if ";" in code:
        raise QueryRejected(sql, "send one statement at a time")
    first = re.match(r"[\s(]*([A-Za-z]+)", code)
    keyword = first.group(1).upper() if first else ""
    if keyword not in READ_ONLY_KEYWORDS:
        allowed = "/".join(sorted(READ_ONLY_KEYWORDS))
        raise QueryRejected(sql, f"only read-only statements ({allowed}) are served, "
                                 f"not {keyword or 'this'}")
    # readonly=1 does not stop chDB writing INTO OUTFILE; look in the raw text too, since
    # quoting the literal stripper does not know (heredocs, $$...$$) can hide it from `code`
    if re.search(r"\bINTO\s+OUTFILE\b", code, re.I) or re.search(r"OUTFILE", sql, re.I):
        raise QueryRejected(sql, "INTO OUTFILE writes files; fetch the rows instead (the "
                                 "word OUTFILE is refused anywhere in the query)")
    return sql.strip().rstrip(";").rstrip()


def json_safe(value: Any) -> Any:
    """A query value as JSON: datetimes as ISO 8601, non-finite floats as null, etc."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, Decimal):
        return str(value)
    return str(value)  # UUID, IP addresses and the like


class QueryServer:
    """Lifecycle: :meth:`start` (binds, serves in a thread, writes the endpoint file),
    :meth:`stop` (removes the file, shuts down; closes the client if ``owns_client``).
    Every client call holds ``lock``: give the server a client of its own (a second chDB
    connection in the owning process) and a long query does not wait on inserts or block
    them. Each query runs at most ``max_execution_s`` and returns at most ``max_rows``."""

    def __init__(self, client: Client, lock: threading.Lock, *, dsn: str,
                 endpoint_file: Path | None, host: str = "127.0.0.1", port: int = 0,
                 max_rows: int = 100_000, max_execution_s: float = 60.0,
                 owns_client: bool = False) -> None:
        self.client, self.lock, self.dsn = client, lock, dsn
        self.endpoint_file, self.max_rows = endpoint_file, max_rows
        self.max_execution_s, self.owns_client = max_execution_s, owns_client
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.query_server = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def execute(self, sql: str, max_execution_s: float | None = None,
                max_rows: int | None = None) -> dict[str, Any]:
        """Run one read-only statement; QueryRejected or the client's error on failure.

        A caller may ask for tighter limits than the server's, never for looser ones."""
        stmt = check_read_only(sql)
        seconds = min(self.max_execution_s, max_execution_s or self.max_execution_s)
        settings = query_settings(seconds, min(self.max_rows, max_rows or self.max_rows))
        with self.lock:
            result = self.client.query(stmt, settings=settings)
            columns = list(result.column_names)
            types = [t.name for t in result.column_types]
            rows = [[json_safe(v) for v in row] for row in result.result_rows]
        return {"columns": columns, "types": types, "rows": rows}

    def start(self) -> str:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="query-server",
                                        daemon=True)
        self._thread.start()
        if self.endpoint_file is not None:
            doc = {"url": self.url, "pid": os.getpid(), "dsn": self.dsn}
            tmp = self.endpoint_file.with_name(f".{self.endpoint_file.name}.{os.getpid()}.tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.endpoint_file)
        logger.info("serving read-only queries on %s for %s", self.url, self.dsn)
        return self.url

    def stop(self) -> None:
        if self.endpoint_file is not None:
            try:
                doc = json.loads(self.endpoint_file.read_text())
                if doc.get("pid") == os.getpid():  # only our own file
                    self.endpoint_file.unlink()
            except (OSError, ValueError):
                pass
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        if self.owns_client:
            with self.lock:
                self.client.close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "millstream-query/1"

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/health":
            self._send(404, {"error": "not found; POST /query with the SQL as the body"})
            return
        qs: QueryServer = self.server.query_server  # type: ignore[attr-defined]
        self._send(200, {"ok": True, "pid": os.getpid(), "dsn": qs.dsn})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/query":
            self._send(404, {"error": "not found; POST /query with the SQL as the body"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(413, {"error": f"the query is longer than {_MAX_BODY} bytes"})
            return
        sql = self.rfile.read(length).decode("utf-8", "replace")
        qs: QueryServer = self.server.query_server  # type: ignore[attr-defined]
        try:
            seconds = float(self.headers.get(LIMIT_SECONDS_HEADER) or 0) or None
            rows = int(self.headers.get(LIMIT_ROWS_HEADER) or 0) or None
        except ValueError:
            self._send(400, {"error": f"{LIMIT_SECONDS_HEADER} and {LIMIT_ROWS_HEADER} "
                                      "must be numbers"})
            return
        try:
            self._send(200, qs.execute(sql, seconds, rows))
        except QueryRejected as exc:
            self._send(400, {"error": str(exc)})
        except Exception as exc:  # the engine's error is the analyst's answer
            self._send(400, {"error": str(exc).strip()[:2000]})

    def _send(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, allow_nan=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
