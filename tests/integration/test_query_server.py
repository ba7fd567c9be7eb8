"""The loopback query server in-process on a real chDB, and millstream.query's fallbacks."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from millstream.query import QueryError, endpoint_file_for, run_query
from millstream.stack.kafka import free_port
from schemas.clickhouse import ddl_statements
from sinks.clickhouse import open_client
from sinks.query_server import QueryServer

pytestmark = pytest.mark.integration


def test_queries_through_the_server_then_directly(chdb_dsn: str) -> None:
    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None
    client = open_client(chdb_dsn)
    try:
        for stmt in ddl_statements():
            client.command(stmt)
        client.insert("readings", [["a/b", "a/c"], [1_700_000_000_000, 1_700_000_000_500],
                                   [1.5, None], [0, 2], ["s", "s"], [1, 1], [1, 2]],
                      column_names=["tag", "ts", "value", "quality", "source", "epoch", "seq"],
                      column_oriented=True)
        server = QueryServer(client, threading.Lock(), dsn=chdb_dsn, endpoint_file=endpoint)
        url = server.start()
        try:
            assert json.loads(endpoint.read_text())["url"] == url
            res = run_query(chdb_dsn, "SELECT tag, ts, value FROM readings ORDER BY seq;")
            assert res.columns == ["tag", "ts", "value"]
            assert res.types == ["LowCardinality(String)", "DateTime64(3, 'UTC')",
                                 "Nullable(Float64)"]
            assert res.rows == [["a/b", "2023-11-14T22:13:20+00:00", 1.5],
                                ["a/c", "2023-11-14T22:13:20.500000+00:00", None]]
            assert run_query(chdb_dsn, "SHOW TABLES").rows[0] == ["aggregates"]
            with pytest.raises(QueryError, match="only read-only statements"):
                run_query(chdb_dsn, "INSERT INTO readings (tag) VALUES ('x')")
            with pytest.raises(QueryError, match="Syntax error"):
                run_query(chdb_dsn, "SELECT FROM WHERE")
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                assert json.loads(resp.read())["ok"] is True
        finally:
            server.stop()
        assert not endpoint.exists()
    finally:
        client.close()
    # a stale endpoint file (its server is gone) falls back to opening chDB directly
    endpoint.write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": 1}))
    assert run_query(chdb_dsn, "SELECT count() FROM readings").rows == [[2]]


def test_missing_database_is_explained(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="no chDB database"):
        run_query(f"chdb://{tmp_path / 'nothing'}", "SELECT 1")
