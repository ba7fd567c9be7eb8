"""The Faust edge of the streams stage: one agent on the readings topic, one timer.

The agent hands each message (key, value, partition, offset) to a :class:`FrameProcessor`
and sends what it returns to the aggregates (columnar frames), late, anomalies, alarms,
commands and dead-letter topics. Two more agents read operators' alarm actions and
false-positive feedback; those topics are keyed by source and partitioned as readings,
so Faust gives each worker the actions of the machines whose readings it holds.
A one-second timer closes the windows of sources that went silent and rewrites the
status file. On shutdown the open windows are flushed before the producer is.

Run it with :func:`run_worker` (foreground, until SIGINT/SIGTERM). State is in memory,
per worker; readings are keyed by source, so each source's windows live in one worker.
Nothing is flushed on a partition revocation: aiokafka revokes every partition on every
rebalance, and most come straight back. If a source moves to another worker, its open
windows here close by the idle timer (and the new owner starts its own).
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust

from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.signing import Signer
from schemas.status import write_status
from schemas.topics import Topics
from streams.exceptions import StreamsError, WorkerError
from streams.processor import FrameProcessor, Output

__all__ = ["create_app", "run_worker"]

logger = logging.getLogger(__name__)

TICK_S = 1.0


def _credentials(conf: Mapping[str, Any]) -> faust.types.auth.CredentialsT | None:
    """librdkafka-style security options (as Settings.kafka_client_config gives them)."""
    known = {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
             "ssl.ca.location"}
    extra = sorted(set(conf) - known)
    if extra:
        logger.warning("kafka options the streams worker does not use: %s", ", ".join(extra))
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    cafile = conf.get("ssl.ca.location")
    context = ssl.create_default_context(cafile=cafile) if "SSL" in protocol else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=conf.get("sasl.username"), password=conf.get("sasl.password"),
            mechanism=conf.get("sasl.mechanism", "PLAIN"), ssl_context=context,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol != "PLAINTEXT":
        raise StreamsError(
            f"security.protocol={protocol!r} is not supported; use PLAINTEXT, SSL, "
            "SASL_PLAINTEXT or SASL_SSL"
        )
    return None


def create_app(
    catalog: Catalog,
    *,
    bootstrap: str,
    topics: Topics,
    app_id: str = "millstream-streams",
    kafka_config: Mapping[str, Any] | None = None,
    status_file: Path | None = None,
    signer: Signer | None = None,
) -> faust.App:
    """A Faust app running the streams stage; its FrameProcessor is ``app.processor``.
    Commands are signed by ``signer`` (the executor refuses unsigned ones)."""
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=_credentials(kafka_config or {}),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        autodiscover=False,
        topic_partitions=topics.partitions(topics.readings),
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        datadir=Path(tempfile.gettempdir()) / f"faust-{app_id}",
    )
    proc = FrameProcessor(catalog)
    app.processor = proc  # type: ignore[attr-defined]

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=topics.partitions(name),
                         key_type=bytes, value_type=bytes)

    readings = topic(topics.readings)
    actions = topic(topics.alarm_actions)
    feedback = topic(topics.anomaly_feedback)
    outs = {
        "aggregates": topic(topics.aggregates), "anomalies": topic(topics.anomalies),
        "commands": topic(topics.commands), "deadletter": topic(topics.deadletter),
        "late": topic(topics.late), "alarms": topic(topics.alarms),
    }

    async def send(out: Output) -> None:
        for frame in out.aggregate_frames:
            await outs["aggregates"].send(key=frame.key(), value=frame.encode())
        for late in out.late:
            await outs["late"].send(key=late.key(), value=late.encode())
        for an in out.anomalies:
            await outs["anomalies"].send(key=an.key(), value=an.encode())
        for al in out.alarms:
            await outs["alarms"].send(key=al.key(), value=al.encode())
        for cmd in out.commands:
            signed = cmd.signed_by(signer) if signer is not None else cmd
            await outs["commands"].send(key=cmd.key(), value=signed.encode())
        for dl in out.deadletters:
            await outs["deadletter"].send(key=dl.key_bytes(), value=dl.encode())

    def status(running: bool) -> None:
        write_status(status_file, {"stage": "streams", "app_id": app_id, "running": running,
                                   "at": now_ms(), **proc.counters()})

    @app.agent(readings)
    async def process(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            out = proc.process(msg.key, msg.value, msg.topic, msg.partition, msg.offset,
                               now_ms())
            if out:
                await send(out)

    @app.agent(actions)
    async def act(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            out = proc.action(msg.value, msg.topic, msg.partition, msg.offset, now_ms())
            if out:
                await send(out)

    @app.agent(feedback)
    async def learn(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            out = proc.feedback(msg.value, msg.topic, msg.partition, msg.offset, now_ms())
            if out:
                await send(out)

    @app.timer(interval=TICK_S)
    async def tick() -> None:
        out = proc.tick(now_ms())
        if out:
            await send(out)
        status(running=True)

    async def flush(sender: Any, *args: Any, **kwargs: Any) -> None:
        out = proc.flush(now_ms())
        logger.info("shutdown: flushing %d open windows",
                    sum(len(f) for f in out.aggregate_frames))
        try:
            await send(out)
        except Exception:  # shutting down anyway: say what was not sent, and why
            logger.exception("shutdown: could not send the last %d aggregate frames, %d "
                             "anomalies, %d alarm records, %d commands",
                             len(out.aggregate_frames), len(out.anomalies), len(out.alarms),
                             len(out.commands))
        status(running=False)

    app.on_before_shutdown.connect(flush)  # type: ignore[arg-type]
    app.streams_status = status  # type: ignore[attr-defined]
    del process, act, learn, tick, flush
    return app


def run_worker(
    catalog: Catalog,
    *,
    bootstrap: str,
    topics: Topics,
    app_id: str = "millstream-streams",
    kafka_config: Mapping[str, Any] | None = None,
    status_file: Path | None = None,
    loglevel: str = "warn",
    signer: Signer | None = None,
) -> None:
    """Run the streams worker in the foreground until SIGINT/SIGTERM."""
    app = create_app(catalog, bootstrap=bootstrap, topics=topics, app_id=app_id,
                     kafka_config=kafka_config, status_file=status_file, signer=signer)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    logger.info("streams worker %s on %s, reading %s", app_id, bootstrap, topics.readings)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise WorkerError(
                f"the streams worker {app_id} stopped with exit code {exc.code}; the log "
                f"above says why (Kafka at {bootstrap})", app_id=app_id, bootstrap=bootstrap,
            ) from exc
    finally:
        app.streams_status(running=False)  # type: ignore[attr-defined]
