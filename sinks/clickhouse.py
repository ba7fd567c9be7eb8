"""ClickHouseSink: every millstream topic into its ClickHouse table (chDB or a server).

Readings frames become one row per reading, inserted column-oriented straight from the
frame's arrays (DateTime64(3) columns take the Unix-ms integers as ticks, no datetime
objects). Bad messages and unknown tags go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from confluent_kafka import Message, Producer

from schemas.aggregates import aggregate_columns
from schemas.catalog import Catalog
from schemas.clickhouse import ddl_statements
from schemas.events import Aggregate, Anomaly, Command, CommandResult, DeadLetter, now_ms
from schemas.exceptions import ContractError
from schemas.readings import ReadingFrame
from schemas.status import write_status
from schemas.topics import Topics
from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Reject, Rows
from sinks.exceptions import SinkError
from sinks.query_server import chdb_path, locked_by_another_process

__all__ = ["READINGS_COLUMNS", "ClickHouseSink", "event_columns", "frame_columns", "open_client"]

logger = logging.getLogger(__name__)

READINGS_COLUMNS = ("tag", "ts", "value", "quality", "source", "epoch", "seq", "server_ts",
                    "status", "text")
_EVENTS: dict[str, type[Any]] = {
    "aggregates": Aggregate, "anomalies": Anomaly, "commands": Command,
    "command_results": CommandResult, "deadletter": DeadLetter,
}
_I64 = (-(2**63), 2**63 - 1)
_U64 = (0, 2**64 - 1)
# integer columns whose ClickHouse type is narrower than a Python int: checked before
# batching, so one out-of-range value cannot make a whole batch fail forever
_INT_RANGES: dict[str, tuple[int, int]] = {
    "count": (0, 2**32 - 1), "partition": (-(2**31), 2**31 - 1), "offset": _I64,
    "window_start": _I64, "window_end": _I64, "detected_at": _I64, "issued_at": _I64,
    "expires_at": _I64, "executed_at": _I64, "at": _I64,
}


def open_client(dsn: str) -> Client:
    """A clickhouse-connect client for ``chdb://PATH`` or ``http(s)://`` DSNs."""
    path = chdb_path(dsn)
    if path is not None and locked_by_another_process(path):
        raise SinkError(
            f"the chDB directory {path} is in use by another process (another `millstream "
            "sink` or `millstream demo`?); stop it, or give this sink another directory"
        )
    try:
        return clickhouse_connect.get_client(dsn=dsn, tz_mode="schema")
    except Exception as exc:
        raise SinkError(f"cannot open ClickHouse at {dsn}: {str(exc)[:300]}") from exc


def frame_columns(frame: ReadingFrame, known: frozenset[str]) -> tuple[list[list[Any]], list[str]]:
    """The frame as readings columns (READINGS_COLUMNS order) and the unknown tags it named.

    Readings whose tag is not in ``known`` are left out of the columns.
    """
    n = len(frame)
    lo, hi = _I64
    if not all(lo <= t <= hi for t in (min(frame.ts), max(frame.ts))):
        raise ContractError("out-of-range", "a ts does not fit DateTime64 (Unix ms, Int64)")
    if not (_U64[0] <= frame.epoch <= _U64[1] and frame.last_seq <= _U64[1]):
        raise ContractError("out-of-range", f"epoch {frame.epoch} or seq does not fit UInt64")
    _check_utf8("source", frame.source)
    server_ts = frame.server_ts or [None] * n
    if frame.server_ts and any(t is not None and not lo <= t <= hi for t in server_ts):
        raise ContractError("out-of-range", "a server_ts does not fit DateTime64 (Unix ms)")
    status = [s or "" for s in frame.status] if frame.status else [""] * n
    text = frame.text or [None] * n
    for name, col in (("status", status), ("text", text)):
        for entry in col:
            if entry:
                _check_utf8(name, entry)
    columns: list[list[Any]] = [frame.tag, frame.ts, frame.value, frame.quality, [frame.source] * n,
               [frame.epoch] * n, list(range(frame.seq, frame.seq + n)), server_ts, status, text]
    if known.issuperset(frame.tag):
        return columns, []
    keep = [i for i, t in enumerate(frame.tag) if t in known]
    unknown = [t for t in frame.tag if t not in known]
    return [[col[i] for i in keep] for col in columns], unknown


def event_columns(event: Any) -> list[list[Any]]:
    """One event as one-row columns, in field order (the DDL's column order)."""
    cols = []
    for f in fields(event):
        value = getattr(event, f.name)
        bounds = _INT_RANGES.get(f.name)
        if bounds and value is not None and not bounds[0] <= value <= bounds[1]:
            raise ContractError("out-of-range", f"{f.name}={value} does not fit its column")
        if isinstance(value, str):
            _check_utf8(f.name, value)
        elif isinstance(value, int) and not bounds:  # a JSON integer for a Float64 column
            try:
                float(value)
            except OverflowError as exc:
                raise ContractError("out-of-range",
                                    f"{f.name} is too large for a Float64") from exc
        cols.append([value])
    return cols


def _check_utf8(name: str, value: str) -> None:
    """JSON may carry lone surrogates ("\\ud800"); they cannot be written as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ContractError("bad-field", f"{name} is not valid Unicode ({exc.reason})") from exc


class ClickHouseSink(BatchingSink):
    """Lifecycle: construct (opens the client, applies the DDL, creates consumer and
    producer), :meth:`run` until stopped, then :meth:`close`. ``lock`` serialises every
    use of ``client``; the query server takes it too."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        bootstrap: str,
        topics: Topics,
        dsn: str,
        group_id: str = "millstream-sink",
        kafka_config: Mapping[str, str] | None = None,
        policy: BatchPolicy | None = None,
        status_file: Path | None = None,
    ) -> None:
        self.dsn, self.topics, self.status_file = dsn, topics, status_file
        self.lock = threading.Lock()
        self.client = open_client(dsn)
        try:
            for stmt in ddl_statements():
                self.client.command(stmt)
            self._tables: dict[str, str] = {
                topics.readings: "readings", topics.aggregates: "aggregates",
                topics.anomalies: "anomalies", topics.commands: "commands",
                topics.command_results: "command_results", topics.deadletter: "deadletter",
            }
            columns: dict[str, Sequence[str]] = {"readings": READINGS_COLUMNS}
            columns.update({t: [f.name for f in fields(c)] for t, c in _EVENTS.items()})
            base = {"bootstrap.servers": bootstrap, **(kafka_config or {})}
            super().__init__({**base, "group.id": group_id}, list(self._tables), columns, policy)
            self._producer = Producer({**base, "linger.ms": "20"})
        except Exception:
            self.client.close()
            raise
        self._known = frozenset(catalog.tags())
        self._contexts: dict[str, InsertContext] = {}
        self.counts.update(deadlettered=0, deadletter_malformed=0, deadletter_errors=0)
        self._started, self._next_status = time.time(), 0.0
        self.query_url: str | None = None

    # -- decoding -----------------------------------------------------------------------
    def decode(self, msg: Message) -> Decoded:
        table = self._tables[msg.topic() or ""]
        if table == "readings":
            frame = ReadingFrame.decode(msg.value())
            cols, unknown = frame_columns(frame, self._known)
            rejects: tuple[Reject, ...] = ()
            if unknown:
                names = ", ".join(sorted(set(unknown))[:5])
                rejects = (Reject("unknown-tag", f"{len(unknown)} of {len(frame)} readings "
                                  f"name tags not in the catalog ({names}); the others were "
                                  "stored"),)
            return Decoded(Rows(table, cols), rejects)
        if table == "aggregates":  # columnar frames (v2) and single aggregates (v1)
            return Decoded(Rows(table, aggregate_columns(msg.value())))
        event = _EVENTS[table].decode(msg.value())
        return Decoded(Rows(table, event_columns(event)))

    def on_reject(self, msg: Message, reject: Reject) -> None:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        if msg.topic() == self.topics.deadletter:  # never re-publish: no loops
            self.counts["deadletter_malformed"] += 1
            logger.error("malformed dead letter at %s (%s: %s); skipped", where,
                         reject.reason, reject.detail)
            return
        logger.warning("dead-lettering %s: %s: %s", where, reject.reason, reject.detail)
        letter = DeadLetter.of(
            stage="sink", reason=reject.reason, detail=reject.detail, topic=msg.topic() or "",
            partition=msg.partition() or 0, offset=msg.offset() or 0, key=msg.key(),
            value=msg.value(),
        )
        self._producer.produce(self.topics.deadletter, letter.encode(), letter.key_bytes(),
                               on_delivery=self._delivered)
        self.counts["deadlettered"] += 1

    def _delivered(self, err: Any, msg: Message) -> None:
        if err is not None:
            # produce it again: until it is delivered the producer is not empty, so
            # ready_to_commit() holds back the offset of the message it stands for
            self.counts["deadletter_errors"] += 1
            logger.error("a dead letter was not delivered, retrying: %s", err)
            self._producer.produce(msg.topic() or self.topics.deadletter, msg.value(),
                                   msg.key(), on_delivery=self._delivered)

    def ready_to_commit(self) -> bool:
        # dead letters first: a message is only committed once its dead letter is stored
        return len(self._producer) == 0 or self._producer.flush(5.0) == 0

    # -- writing ------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        with self.lock:
            ctx = self._contexts.get(batch.table)
            if ctx is None:
                ctx = self.client.create_insert_context(
                    batch.table, list(batch.column_names), column_oriented=True)
                self._contexts[batch.table] = ctx
            ctx.data = batch.data
            try:
                self.client.insert(context=ctx)
            except Exception:
                self._contexts.pop(batch.table, None)
                raise

    # -- status -------------------------------------------------------------------------
    def tick(self) -> None:
        self._producer.poll(0)
        now = time.monotonic()
        if self.status_file is not None and now >= self._next_status:
            self._next_status = now + 1.0
            self.write_status()

    def status(self, *, running: bool = True) -> dict[str, Any]:
        c = self.counts
        rate = {t: round(c["inserted"][t] / s) for t, s in c["insert_seconds"].items() if s > 0}
        return {
            "stage": "sink", "pid": os.getpid(), "dsn": self.dsn, "running": running,
            "inserted": dict(c["inserted"]), "insert_rows_per_s": rate,
            "insert_errors": c["insert_errors"], "consumed": c["consumed"],
            "deadlettered": c["deadlettered"], "deadletter_malformed": c["deadletter_malformed"],
            "deadletter_errors": c["deadletter_errors"], "commits": c["commits"],
            "pending_rows": self.pending_rows(), "lag": self.lag(), "query_url": self.query_url,
            "started_at": int(self._started * 1000), "updated_at": now_ms(),
        }

    def write_status(self, *, running: bool = True) -> None:
        write_status(self.status_file, self.status(running=running))

    def close(self) -> None:
        """Deliver outstanding dead letters and close the ClickHouse client."""
        left = self._producer.flush(10.0)
        if left:
            logger.error("%d dead letters were not delivered", left)
        with self.lock:
            self.client.close()
