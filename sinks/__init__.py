"""Sinks: ClickHouse writer (batching, at-least-once), the loopback query server, and the
command path to the machines (safety gateway, device writers, executor)."""

from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Reject, Rows
from sinks.clickhouse import ClickHouseSink, event_columns, frame_columns, open_client
from sinks.devices import DevicePool, DeviceWriter
from sinks.exceptions import DeviceError, InsertError, QueryRejected, SinkError
from sinks.executor import run_executor
from sinks.query_server import QueryServer, check_read_only, endpoint_file_for, json_safe
from sinks.run import run_sink
from sinks.safety import SafetyGateway, Verdict

__all__ = [
    "Batch",
    "BatchPolicy",
    "BatchingSink",
    "ClickHouseSink",
    "Decoded",
    "DeviceError",
    "DevicePool",
    "DeviceWriter",
    "InsertError",
    "QueryRejected",
    "QueryServer",
    "Reject",
    "Rows",
    "SafetyGateway",
    "SinkError",
    "Verdict",
    "check_read_only",
    "endpoint_file_for",
    "event_columns",
    "frame_columns",
    "json_safe",
    "open_client",
    "run_executor",
    "run_sink",
]
