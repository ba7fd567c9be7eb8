"""Output formats of ``millstream query``."""

from __future__ import annotations

import csv
import io
import json

from millstream.query import QueryResult, format_csv, format_json, format_table

RESULT = QueryResult(["tag", "n", "ts"], ["String", "UInt64", "DateTime64(3, 'UTC')"],
                     [["a/b", 5, "2025-01-01T00:00:00+00:00"], ["long/tag/name", 12345, None]])


def test_table_is_aligned_with_numbers_right() -> None:
    lines = format_table(RESULT).splitlines()
    assert lines[0].split() == ["tag", "n", "ts"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].startswith("a/b ") and "    5  " in lines[2]
    assert lines[3].startswith("long/tag/name  12345  NULL")
    assert lines[-1] == "(2 rows)"
    assert len(lines[1]) == len(lines[2])  # the rule spans the full first row


def test_empty_table() -> None:
    text = format_table(QueryResult(["x"], ["UInt8"], []))
    assert text.splitlines() == ["x", "-", "(0 rows)"]


def test_csv_round_trips() -> None:
    rows = list(csv.reader(io.StringIO(format_csv(RESULT))))
    assert rows == [["tag", "n", "ts"], ["a/b", "5", "2025-01-01T00:00:00+00:00"],
                    ["long/tag/name", "12345", ""]]


def test_json_is_array_of_objects() -> None:
    assert json.loads(format_json(RESULT)) == [
        {"tag": "a/b", "n": 5, "ts": "2025-01-01T00:00:00+00:00"},
        {"tag": "long/tag/name", "n": 12345, "ts": None},
    ]
