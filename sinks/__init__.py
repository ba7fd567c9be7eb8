"""Sinks: ClickHouse writer (batching, at-least-once), the loopback query server, and the
command path to the machines (safety gateway, device writers, executor)."""

from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Origin, Reject, Rows
from sinks.chclient import ClientOptions, open_client, redact_dsn
from sinks.clickhouse import ClickHouseSink
from sinks.devices import DevicePool, DeviceWriter
from sinks.exceptions import DeviceError, InsertError, QueryRejected, SinkError
from sinks.executor import run_executor
from sinks.migrations import apply_ttl, migrate
from sinks.query_server import QueryServer, check_read_only, endpoint_file_for, json_safe
from sinks.rows import READINGS_COLUMNS, event_columns, frame_columns
from sinks.run import run_sink
from sinks.safety import SafetyGateway, Verdict

__all__ = [
    "READINGS_COLUMNS",
    "Batch",
    "BatchPolicy",
    "BatchingSink",
    "ClickHouseSink",
    "ClientOptions",
    "Decoded",
    "DeviceError",
    "DevicePool",
    "DeviceWriter",
    "InsertError",
    "Origin",
    "QueryRejected",
    "QueryServer",
    "Reject",
    "Rows",
    "SafetyGateway",
    "SinkError",
    "Verdict",
    "apply_ttl",
    "check_read_only",
    "endpoint_file_for",
    "event_columns",
    "frame_columns",
    "json_safe",
    "migrate",
    "open_client",
    "redact_dsn",
    "run_executor",
    "run_sink",
]
