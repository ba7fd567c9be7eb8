"""The metrics every stage serves on ``/metrics``: one catalog of names, kinds and labels.

Counters and gauges are read from the stage's status document (the dict its status file
holds, reported every second), so the stages count once, in their own code, and a scrape
never touches their objects. Histograms (frame sizes, insert and processing times) are
observed where the work happens (:class:`schemas.health.StageHealth`). Every name starts
with ``millstream_``; ``stage`` is ``connector``, ``streams``, ``sink`` or ``executor`` (the
same names as the dead-letter records' ``stage``) or ``dashboard``. The README's metrics table lists
:data:`METRICS`, and a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["METRICS", "STAGES", "MetricSpec", "Sample", "samples", "spec"]

STAGES = ("connector", "streams", "sink", "executor", "dashboard")

Sample = tuple[str, dict[str, str], float]  # exposition name, labels, value


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: ``name`` as exposed (counters end in ``_total``), its label names, and
    which stages serve it."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    stages: tuple[str, ...]
    help: str


def _m(name: str, kind: Literal["counter", "gauge", "histogram"], labels: str, stages: str,
       help: str) -> MetricSpec:
    return MetricSpec(name, kind, tuple(labels.split()), tuple(stages.split()), help)


METRICS: tuple[MetricSpec, ...] = (
    _m("millstream_readings_in_total", "counter", "stage source", "connector streams",
       "readings taken in: read from the device (connector), consumed from the readings "
       "topic (streams)"),
    _m("millstream_readings_out_total", "counter", "stage source", "connector sink",
       "readings passed on: confirmed by Kafka (connector), stored in ClickHouse (sink)"),
    _m("millstream_readings_failed_total", "counter", "stage source", "connector",
       "readings Kafka did not accept and the connector gave up on"),
    _m("millstream_readings_pending", "gauge", "stage source", "connector",
       "readings read but not confirmed by Kafka yet (in the spool or the producer)"),
    _m("millstream_readings_late_total", "counter", "stage", "streams",
       "readings that arrived after their window had closed (sent to the late topic)"),
    _m("millstream_readings_duplicate_total", "counter", "stage", "streams sink",
       "readings delivered again and ignored (same source, epoch and sequence number)"),
    _m("millstream_readings_rejected_total", "counter", "stage reason", "streams",
       "readings dead-lettered, by reason (unknown-tag, future-timestamp, ...)"),
    _m("millstream_messages_in_total", "counter", "stage topic",
       "streams sink executor dashboard", "Kafka messages consumed"),
    _m("millstream_consumer_lag_messages", "gauge", "stage topic",
       "streams sink executor dashboard", "messages behind the end of the assigned partitions"),
    _m("millstream_aggregates_total", "counter", "stage", "streams",
       "window results published (one per tag and window)"),
    _m("millstream_anomalies_total", "counter", "stage", "streams",
       "anomalies the detector raised"),
    _m("millstream_alarms_raised_total", "counter", "stage", "streams",
       "alarms raised (alarm episodes started)"),
    _m("millstream_commands_total", "counter", "stage verdict", "streams executor",
       "commands: issued by rules (streams); applied, rejected, failed, dry-run, pending "
       "(executor)"),
    _m("millstream_rows_inserted_total", "counter", "stage table", "sink",
       "rows inserted into ClickHouse, by table"),
    _m("millstream_dead_letters_total", "counter", "stage source", "connector streams sink "
       "executor", "messages sent to the dead-letter topic"),
    _m("millstream_errors_total", "counter", "stage source kind", "connector sink dashboard",
       "errors: device (connector), insert and deadletter-delivery (sink), decode (dashboard: "
       "a message it could not read, skipped and left on its topic)"),
    _m("millstream_connector_connected", "gauge", "stage source", "connector",
       "1 while the connector is connected to its device or broker"),
    _m("millstream_spool_bytes", "gauge", "stage source", "connector",
       "bytes in the connector's disk spool"),
    _m("millstream_spool_readings", "gauge", "stage source", "connector",
       "readings in the connector's disk spool"),
    _m("millstream_spool_oldest_age_seconds", "gauge", "stage source", "connector",
       "age of the oldest frame not yet confirmed by Kafka"),
    _m("millstream_spool_dropped_readings_total", "counter", "stage source", "connector",
       "readings a full spool dropped (policy drop-oldest; each drop leaves a gap marker)"),
    _m("millstream_open_windows", "gauge", "stage", "streams", "windows open in memory"),
    _m("millstream_sink_pending_rows", "gauge", "stage", "sink",
       "rows batched or queued, not inserted yet"),
    _m("millstream_sink_paused", "gauge", "stage", "sink",
       "1 while consumption is paused (an insert is failing, or too much waits)"),
    _m("millstream_kill_switches_active", "gauge", "stage", "executor",
       "kill switches on (commands to their machines are refused)"),
    _m("millstream_dashboard_clients", "gauge", "stage", "dashboard",
       "dashboard pages connected to the live event stream"),
    _m("millstream_last_report_timestamp_seconds", "gauge", "stage", "connector streams sink "
       "executor dashboard", "when the stage's own loop last reported (Unix time); stands still if "
       "the loop is stuck"),
    _m("millstream_frame_readings", "histogram", "stage source", "connector streams",
       "readings per frame: published (connector), consumed (streams)"),
    _m("millstream_process_seconds", "histogram", "stage topic", "streams executor",
       "time to process one message: a readings frame (streams), a command (executor)"),
    _m("millstream_insert_rows", "histogram", "stage table", "sink",
       "rows per ClickHouse insert (batch size)"),
    _m("millstream_insert_seconds", "histogram", "stage table", "sink",
       "time of one ClickHouse insert"),
)

_BY_NAME = {m.name: m for m in METRICS}


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class _Out:
    """Collects samples; a field missing from the document gives no sample."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.items: list[Sample] = []

    def add(self, name: str, value: Any, **labels: str) -> None:
        v = _num(value)
        if v is not None:
            self.items.append((name, {"stage": self.stage, **labels}, v))


def _connector(out: _Out, doc: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    src = str(doc.get("source") or ctx.get("source", ""))
    produced, delivered, failed = (doc.get(k, 0) for k in ("produced", "delivered", "failed"))
    out.add("millstream_readings_in_total", produced, source=src)
    out.add("millstream_readings_out_total", delivered, source=src)
    out.add("millstream_readings_failed_total", failed, source=src)
    if all(isinstance(v, int) for v in (produced, delivered, failed)):
        out.add("millstream_readings_pending", max(0, produced - delivered - failed), source=src)
    out.add("millstream_errors_total", doc.get("errors"), source=src, kind="device")
    out.add("millstream_connector_connected", doc.get("connected"), source=src)
    out.add("millstream_dead_letters_total", doc.get("dead_lettered", 0), source=src)
    spool = doc.get("spool")
    if isinstance(spool, Mapping):
        out.add("millstream_spool_bytes", spool.get("bytes"), source=src)
        out.add("millstream_spool_readings", spool.get("readings"), source=src)
        out.add("millstream_spool_oldest_age_seconds", spool.get("oldest_age_s"), source=src)
        out.add("millstream_spool_dropped_readings_total", spool.get("dropped_readings"),
                source=src)


def _streams(out: _Out, doc: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    topic = ctx.get("topic", "")
    out.add("millstream_readings_in_total", doc.get("readings"), source="")
    out.add("millstream_messages_in_total", doc.get("frames"), topic=topic)
    out.add("millstream_consumer_lag_messages", doc.get("lag"), topic=topic)
    out.add("millstream_readings_late_total", doc.get("late"))
    out.add("millstream_readings_duplicate_total", doc.get("duplicates"))
    for reason, n in sorted((doc.get("dead_readings") or {}).items()):
        out.add("millstream_readings_rejected_total", n, reason=str(reason))
    out.add("millstream_aggregates_total", doc.get("aggregates"))
    out.add("millstream_anomalies_total", doc.get("anomalies"))
    out.add("millstream_alarms_raised_total", doc.get("alarms_raised", 0))
    out.add("millstream_commands_total", doc.get("commands"), verdict="issued")
    out.add("millstream_dead_letters_total", doc.get("deadletters"), source="")
    out.add("millstream_open_windows", doc.get("open_windows"))


def _sink(out: _Out, doc: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    inserted = doc.get("inserted") or {}
    out.add("millstream_readings_out_total", inserted.get("readings"), source="")
    for table, n in sorted(inserted.items()):
        out.add("millstream_rows_inserted_total", n, table=str(table))
    out.add("millstream_messages_in_total", doc.get("consumed"), topic="")
    out.add("millstream_consumer_lag_messages", doc.get("lag"), topic="")
    out.add("millstream_readings_duplicate_total", doc.get("redelivered"))
    out.add("millstream_dead_letters_total", doc.get("deadlettered"), source="")
    out.add("millstream_errors_total", doc.get("insert_errors"), source="", kind="insert")
    out.add("millstream_errors_total", doc.get("deadletter_errors"), source="",
            kind="deadletter-delivery")
    out.add("millstream_sink_pending_rows", doc.get("pending_rows"))
    out.add("millstream_sink_paused", doc.get("paused"))


_VERDICTS = ("applied", "rejected", "failed", "dry-run", "pending")


def _executor(out: _Out, doc: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    topic = ctx.get("topic", "")
    out.add("millstream_messages_in_total", doc.get("received"), topic=topic)
    out.add("millstream_consumer_lag_messages", doc.get("lag"), topic=topic)
    for verdict in _VERDICTS:
        out.add("millstream_commands_total", doc.get(verdict), verdict=verdict)
    out.add("millstream_dead_letters_total", doc.get("deadlettered"), source="")
    switches = doc.get("kill_switches")
    if isinstance(switches, list | dict):
        out.add("millstream_kill_switches_active", len(switches))


def _dashboard(out: _Out, doc: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    for topic, n in sorted((doc.get("consumed") or {}).items()):
        out.add("millstream_messages_in_total", n, topic=str(topic))
    out.add("millstream_consumer_lag_messages", doc.get("lag"), topic="")
    for topic, n in sorted((doc.get("invalid") or {}).items()):
        out.add("millstream_errors_total", n, source=str(topic), kind="decode")
    out.add("millstream_dashboard_clients", doc.get("clients"))


_BY_STAGE: dict[str, Callable[[_Out, Mapping[str, Any], Mapping[str, str]], None]] = {
    "connector": _connector, "streams": _streams, "sink": _sink, "executor": _executor,
    "dashboard": _dashboard,
}


def samples(stage: str, doc: Mapping[str, Any], context: Mapping[str, str] | None = None,
            reported_at: float | None = None) -> Iterable[Sample]:
    """The counter and gauge samples of ``stage`` from its status document. ``context``
    gives labels the document does not hold (``topic``: the stage's input topic;
    ``source``); ``reported_at`` is when the document was reported (Unix seconds)."""
    out = _Out(stage)
    fill = _BY_STAGE.get(stage)
    if fill is not None:
        fill(out, doc, context or {})
    if reported_at is not None:
        out.add("millstream_last_report_timestamp_seconds", reported_at)
    return out.items
