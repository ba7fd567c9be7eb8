"""The query server's pure parts: the read-only check, JSON-safe values, endpoint paths."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from sinks.exceptions import QueryRejected
from sinks.query_server import check_read_only, endpoint_file_for, json_safe


@pytest.mark.parametrize("sql", [
    "SELECT 1", "select count() from readings;", "  -- note\nSHOW TABLES",
    "/* x */ DESCRIBE readings", "DESC readings", "EXPLAIN SELECT 1", "WITH 1 AS x SELECT x",
    "EXISTS readings",
    "(SELECT 1) UNION ALL (SELECT 2)", "SELECT ';' AS semi", "SELECT 'drop table x'",
])
def test_read_only_statements_pass(sql: str) -> None:
    assert check_read_only(sql) == sql.strip().rstrip(";")


@pytest.mark.parametrize("sql,why", [
    ("INSERT INTO readings VALUES (1)", "not INSERT"),
    ("drop table readings", "not DROP"),
    ("ALTER TABLE readings DELETE WHERE 1", "not ALTER"),
    ("SET readonly = 0", "not SET"),
    ("SELECT 1; DROP TABLE readings", "one statement"),
    ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "INTO OUTFILE"),
    # heredoc strings ($$...$$), which the literal stripper does not know, hid OUTFILE
    # from it; chDB writes the file in the sink's process even with readonly=1
    ("SELECT $$'$$ INTO OUTFILE '/tmp/x.csv' -- '", "INTO OUTFILE"),
    ("SELECT $$/*$$ INTO/**/OUTFILE '/tmp/x.csv'", "INTO OUTFILE"),
    ("  ;  ", "empty"),
    ("-- SELECT\nTRUNCATE readings", "not TRUNCATE"),
])
def test_writing_statements_are_refused(sql: str, why: str) -> None:
    with pytest.raises(QueryRejected) as info:
        check_read_only(sql)
    assert why in str(info.value)


def test_json_safe_values() -> None:
    utc = dt.UTC
    values = [
        dt.datetime(2025, 1, 2, 3, 4, 5, 123000, tzinfo=utc), dt.date(2025, 1, 2),
        Decimal("1.50"), uuid.UUID(int=1), ipaddress.IPv4Address("1.2.3.4"), float("nan"),
        b"ab", b"\xff", (1, "x"), {1: [float("inf")]}, None, True, 2**64 - 1,
    ]
    out = [json_safe(v) for v in values]
    assert out == [
        "2025-01-02T03:04:05.123000+00:00", "2025-01-02", "1.50",
        "00000000-0000-0000-0000-000000000001", "1.2.3.4", None, "ab", "/w==", [1, "x"],
        {"1": [None]}, None, True, 2**64 - 1,
    ]
    json.dumps(out, allow_nan=False)


def test_endpoint_file_next_to_the_directory() -> None:
    assert endpoint_file_for("chdb:///var/lib/ms/chdb") == Path("/var/lib/ms/chdb.query.json")
    assert endpoint_file_for("chdb:///var/lib/ms/chdb/") == Path("/var/lib/ms/chdb.query.json")
    assert endpoint_file_for("http://localhost:8123") is None
    assert endpoint_file_for("chdb://memory") is None
