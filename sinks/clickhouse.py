"""ClickHouseSink: every millstream topic into its ClickHouse table (chDB or a server).

On start it applies the schema migrations (and the configured TTLs). Readings frames
become one row per reading with the tag's unit from the catalog; a reading already stored
(a redelivery) is skipped (:mod:`sinks.progress`). Bad messages and unknown tags go to the
dead-letter topic with the reason; so do rows ClickHouse refuses, with its message
(:mod:`sinks.poison`), while the rest of their batch is stored.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.insert import InsertContext
from confluent_kafka import Message, Producer, TopicPartition

from schemas.aggregates import aggregate_columns
from schemas.alarms import Alarm
from schemas.catalog import Catalog
from schemas.control import AuditRecord
from schemas.events import Aggregate, Anomaly, Command, CommandResult, DeadLetter, now_ms
from schemas.kpis import KpiRecord
from schemas.readings import ReadingFrame
from schemas.status import write_status
from schemas.topics import Topics
from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Origin, Reject, Rows
from sinks.chclient import ClientOptions, open_client, redact_dsn
from sinks.migrations import apply_ttl, migrate
from sinks.poison import insert_isolating
from sinks.progress import SeqProgress
from sinks.rows import READINGS_COLUMNS, TWIN_COLUMNS, event_columns, frame_columns, twin_columns
from sinks.spc_rows import SPC_COLUMNS, SPC_TOPIC_TABLE, spc_rows

if TYPE_CHECKING:
    from schemas.health import StageHealth

__all__ = ["READINGS_COLUMNS", "ClickHouseSink", "event_columns", "frame_columns", "open_client"]

logger = logging.getLogger(__name__)

_EVENTS: dict[str, type[Any]] = {
    "aggregates": Aggregate, "anomalies": Anomaly, "commands": Command,
    "command_results": CommandResult, "deadletter": DeadLetter,
    "command_audit_log": AuditRecord, "kpis": KpiRecord, "alarms": Alarm,
}
# a batch may span many daily partitions (a backfill); splitting it is not an error
_INSERT_SETTINGS = {"throw_on_max_partitions_per_insert_block": 0}


class ClickHouseSink(BatchingSink):
    """Lifecycle: construct (opens the client, migrates, creates consumer and producer),
    :meth:`run` until stopped, then :meth:`close`. ``lock`` serialises every use of
    ``client``. Decoding runs in the consuming thread, :meth:`write` in the writer thread;
    what both touch (readings done elsewhere, dead-letter counts) is under ``_shared``."""

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
        client_options: ClientOptions | None = None,
        ttl_days: Mapping[str, int] | None = None,
        health: StageHealth | None = None,
    ) -> None:
        self.dsn, self.topics, self.status_file = dsn, topics, status_file
        self.health = health  # gets the status every second and each insert's size and time
        self.client_options = client_options
        self.lock = threading.Lock()
        self._shared = threading.Lock()
        self.client = open_client(dsn, client_options)
        try:
            migrate(self.client)
            if ttl_days is not None:
                apply_ttl(self.client, ttl_days)
            self._progress = SeqProgress()
            self._progress.load(self.client)
            self._tables: dict[str, str] = {
                topics.readings: "readings", topics.aggregates: "aggregates",
                topics.anomalies: "anomalies", topics.commands: "commands",
                topics.command_results: "command_results", topics.deadletter: "deadletter",
                topics.command_audit: "command_audit_log", topics.twin: "twin",
                topics.kpis: "kpis", topics.alarms: "alarms",
                topics.spc: SPC_TOPIC_TABLE,
            }
            columns: dict[str, Sequence[str]] = {"readings": READINGS_COLUMNS,
                                                 "twin": TWIN_COLUMNS}
            columns.update({t: [f.name for f in fields(c)] for t, c in _EVENTS.items()})
            columns.update(SPC_COLUMNS)
            base = {"bootstrap.servers": bootstrap, **(kafka_config or {})}
            super().__init__({**base, "group.id": group_id}, list(self._tables), columns, policy)
            self._producer = Producer({**base, "linger.ms": "20"})
        except Exception:
            self.client.close()
            raise
        self._units = {path: info.spec.unit for path, info in catalog.tags().items()}
        self._contexts: dict[str, InsertContext] = {}
        # readings_progress rows for readings that will never be stored (dead-lettered)
        self._done_elsewhere: list[list[Any]] = []
        self.counts.update(deadlettered=0, deadletter_malformed=0, deadletter_errors=0,
                           redelivered=0, refused_rows=0)
        self._started, self._next_status = time.time(), 0.0
        self.query_url: str | None = None

    # -- decoding -----------------------------------------------------------------------
    def decode(self, msg: Message) -> Decoded:
        table = self._tables[msg.topic() or ""]
        if table == "readings":
            return self._decode_frame(ReadingFrame.decode(msg.value()))
        if table == "aggregates":  # columnar frames (v2) and single aggregates (v1)
            return Decoded(Rows(table, aggregate_columns(msg.value())))
        if table == "twin":
            return Decoded(Rows(table, twin_columns(msg.value())))
        if table == SPC_TOPIC_TABLE:
            return Decoded(spc_rows(msg.value()))
        event = _EVENTS[table].decode(msg.value())
        return Decoded(Rows(table, event_columns(event)))

    def _decode_frame(self, frame: ReadingFrame) -> Decoded:
        todo = self._progress.missing(frame.source, frame.epoch, frame.seq, frame.last_seq)
        if not todo:
            self.counts["redelivered"] += len(frame)
            return Decoded()
        cols, unknown = frame_columns(frame, self._units)
        fresh = sum(hi - lo + 1 for lo, hi in todo)
        if fresh < len(frame):  # part of the frame is stored already
            self.counts["redelivered"] += len(frame) - fresh
            keep = [i for i, s in enumerate(cols[6]) if any(lo <= s <= hi for lo, hi in todo)]
            cols = [[c[i] for i in keep] for c in cols]
        for lo, hi in todo:
            self._progress.accept(frame.source, frame.epoch, lo, hi)
        if unknown:  # left out for good: count them as done in readings_progress
            stored = set(cols[6])
            gone = [s for lo, hi in todo for s in range(lo, hi + 1) if s not in stored]
            if gone:
                with self._shared:
                    self._done_elsewhere.append([frame.source, frame.epoch, min(gone),
                                                 max(gone), len(gone)])
        rejects: tuple[Reject, ...] = ()
        if unknown:
            names = ", ".join(sorted(set(unknown))[:5])
            rejects = (Reject("unknown-tag", f"{len(unknown)} of {len(frame)} readings "
                              f"name tags not in the catalog ({names}); the others were "
                              "stored"),)
        return Decoded(Rows("readings", cols), rejects)

    def on_assign(self, parts: list[TopicPartition]) -> None:
        # another sink may have stored more of these partitions' sources meanwhile
        with self.lock:
            self._progress.load(self.client)

    def on_reject(self, msg: Message, reject: Reject) -> None:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        if msg.topic() == self.topics.deadletter:  # never re-publish: no loops
            with self._shared:
                self.counts["deadletter_malformed"] += 1
            logger.error("malformed dead letter at %s (%s: %s); skipped", where,
                         reject.reason, reject.detail)
            return
        logger.warning("dead-lettering %s: %s: %s", where, reject.reason, reject.detail)
        self._dead_letter("sink", reject.reason, reject.detail,
                          Origin(0, msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                                 msg.key()), msg.value())

    def _dead_letter(self, stage: str, reason: str, detail: str, origin: Origin,
                     value: bytes | None) -> None:
        letter = DeadLetter.of(stage=stage, reason=reason, detail=detail, topic=origin.topic,
                               partition=origin.partition, offset=origin.offset,
                               key=origin.key, value=value)
        self._producer.produce(self.topics.deadletter, letter.encode(), letter.key_bytes(),
                               on_delivery=self._delivered)
        with self._shared:
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
        refused = insert_isolating(lambda lo, hi: self._insert(batch, lo, hi), batch.rows)
        if refused:
            self._refuse(batch, refused)
        if batch.table == "readings":
            self._record_done_elsewhere()

    def _record_done_elsewhere(self) -> None:
        """Count dead-lettered readings as done, so a redelivery after a restart skips them
        (best effort: if this fails they are only dead-lettered again)."""
        with self._shared:
            rows, self._done_elsewhere = self._done_elsewhere, []
        if not rows:
            return
        try:
            with self.lock:
                self.client.insert("readings_progress", rows,
                                   column_names=["source", "epoch", "lo", "hi", "n"])
        except Exception as exc:
            logger.warning("could not record %d dead-lettered readings as done: %s",
                           len(rows), str(exc)[:300])

    def _insert(self, batch: Batch, lo: int, hi: int) -> None:
        with self.lock:
            ctx = self._contexts.get(batch.table)
            if ctx is None:
                ctx = self.client.create_insert_context(
                    batch.table, list(batch.column_names), column_oriented=True)
                self._contexts[batch.table] = ctx
            # the same rows are retried under the same token: a block that did land is
            # skipped by ClickHouse, and so are its materialised views' blocks
            ctx.settings = {**_INSERT_SETTINGS,
                            "insert_deduplication_token": f"{batch.token}-{lo}-{hi}"}
            ctx.data = batch.columns(lo, hi)
            try:
                self.client.insert(context=ctx)
            except Exception:
                self._contexts.pop(batch.table, None)
                raise

    def _refuse(self, batch: Batch, refused: list[tuple[int, BaseException]]) -> None:
        """Dead-letter the rows ClickHouse refused: one letter per message they came from."""
        batch.refused = len(refused)
        self.counts["refused_rows"] += len(refused)
        if batch.table == "readings":
            names = batch.column_names
            src, ep, sq = names.index("source"), names.index("epoch"), names.index("seq")
            with self._shared:
                for row, _ in refused:
                    s = batch.data[sq][row]
                    self._done_elsewhere.append([batch.data[src][row], batch.data[ep][row],
                                                 s, s, 1])
        by_origin: dict[Origin | None, list[tuple[int, BaseException]]] = {}
        for row, exc in refused:
            by_origin.setdefault(batch.origin_of(row), []).append((row, exc))
        for origin, items in by_origin.items():
            error = " ".join(str(items[0][1]).split())[:1500]
            detail = (f"ClickHouse refused {len(items)} row(s) of {batch.table}: {error}")
            logger.error("dead-lettering %s", detail)
            if batch.table == "deadletter" or origin is None:
                with self._shared:
                    self.counts["deadletter_malformed"] += 1
                continue
            rows = [{c: batch.data[i][row] for i, c in enumerate(batch.column_names)}
                    for row, _ in items]
            payload = json.dumps({"table": batch.table, "rows": rows}, default=str).encode()
            self._dead_letter("sink-insert", "insert-refused", detail, origin, payload)

    # -- status -------------------------------------------------------------------------
    def tick(self) -> None:
        self._producer.poll(0)
        now = time.monotonic()
        if (self.status_file or self.health) is not None and now >= self._next_status:
            self._next_status = now + 1.0
            self.write_status()

    def status(self, *, running: bool = True) -> dict[str, Any]:
        c = self.counts
        rate = {t: round(c["inserted"][t] / s) for t, s in c["insert_seconds"].items() if s > 0}
        return {
            "stage": "sink", "pid": os.getpid(), "dsn": redact_dsn(self.dsn),
            "running": running, "inserted": dict(c["inserted"]), "insert_rows_per_s": rate,
            "insert_errors": c["insert_errors"], "consumed": c["consumed"],
            "deadlettered": c["deadlettered"], "deadletter_malformed": c["deadletter_malformed"],
            "deadletter_errors": c["deadletter_errors"], "commits": c["commits"],
            "refused_rows": c["refused_rows"], "redelivered": c["redelivered"],
            "paused": self._paused, "pauses": c["paused"],
            "pending_rows": self.pending_rows(), "pending_rows_max": c["pending_rows_max"],
            "lag": self.lag(), "query_url": self.query_url,
            "insert_failing": self.insert_failing(), "last_error": self.last_insert_error(),
            "started_at": int(self._started * 1000), "updated_at": now_ms(),
        }

    def write_status(self, *, running: bool = True) -> None:
        doc = self.status(running=running)
        write_status(self.status_file, doc if self.health is None else self.health.report(doc))

    def on_written(self, table: str, rows: int, seconds: float) -> None:
        if self.health is not None:
            self.health.observe_insert(table, rows, seconds)

    def close(self) -> None:
        """Deliver outstanding dead letters and close the ClickHouse client."""
        left = self._producer.flush(10.0)
        if left:
            logger.error("%d dead letters were not delivered", left)
        with self.lock:
            self.client.close()
