"""Sinks: ClickHouse writer (batching, at-least-once) and the loopback query server."""

from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Reject, Rows
from sinks.clickhouse import ClickHouseSink, event_columns, frame_columns, open_client
from sinks.exceptions import InsertError, QueryRejected, SinkError
from sinks.query_server import QueryServer, check_read_only, endpoint_file_for, json_safe
from sinks.run import run_sink

__all__ = [
    "Batch",
    "BatchPolicy",
    "BatchingSink",
    "ClickHouseSink",
    "Decoded",
    "InsertError",
    "QueryRejected",
    "QueryServer",
    "Reject",
    "Rows",
    "SinkError",
    "check_read_only",
    "endpoint_file_for",
    "event_columns",
    "frame_columns",
    "json_safe",
    "open_client",
    "run_sink",
]
