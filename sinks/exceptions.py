"""Errors of the sinks: inserting into ClickHouse and serving queries for other processes."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["DeviceError", "InsertError", "QueryRejected", "SinkError"]


class SinkError(MillstreamError):
    """A sink could not start, write or serve."""


class InsertError(SinkError):
    """A batch could not be inserted; the sink keeps the rows and retries after ``retry_after``."""

    def __init__(
        self, table: str, rows: int, attempts: int, retry_after: float, cause: str
    ) -> None:
        super().__init__(
            f"inserting {rows} rows into {table!r} failed (attempt {attempts}, "
            f"retrying in {retry_after:.1f}s): {cause}"
        )
        self.table = table
        self.rows = rows
        self.attempts = attempts
        self.retry_after = retry_after


class QueryRejected(SinkError):
    """The query server refused a statement (not read-only, or empty)."""

    def __init__(self, sql: str, why: str) -> None:
        head = " ".join(sql.split())[:80]
        super().__init__(f"query refused: {why} (got: {head!r})")
        self.sql = sql
        self.why = why


class DeviceError(SinkError):
    """A device did not take a write or did not answer; ``source`` and ``tag`` say which."""

    def __init__(self, source: str, tag: str, detail: str) -> None:
        super().__init__(f"{source}: writing {tag}: {detail}")
        self.source = source
        self.tag = tag
        self.detail = detail
