"""`millstream query` with no sink running opens chDB itself, and stays read-only."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
import pytest

from millstream.query import QueryError, run_query


def test_direct_queries_read_but_never_write(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'chdb'}"
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        client.command("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
        client.command("INSERT INTO t VALUES (1), (2)")
    finally:
        client.close()
    assert run_query(dsn, "SELECT count() FROM t").rows == [[2]]
    for sql in ("DROP TABLE t", "INSERT INTO t VALUES (3)",
                "SELECT 1 INTO OUTFILE '/tmp/millstream-should-not-exist'"):
        with pytest.raises(QueryError):
            run_query(dsn, sql)
    assert run_query(dsn, "SELECT count() FROM t").rows == [[2]]
    assert not Path("/tmp/millstream-should-not-exist").exists()
