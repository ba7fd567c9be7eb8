"""The Faust edge of the streams stage: one agent on the readings topic, one timer, and the
rebalance callbacks, all handing over to :class:`streams.keeper.StateKeeper`; and the
digital twin's agents (:mod:`streams.twin_app`).

The agent passes each message (key, value, partition, offset) to the keeper, which runs
the :class:`FrameProcessor` and sends the results (aggregates as columnar frames, late
readings, anomalies, alarm records, signed commands, dead letters, twin parts, KPI records)
through its own producers (:mod:`streams.outputs`). Two more agents read operators' alarm
actions and false-positive feedback: those topics are keyed by source and partitioned as
readings, so Faust gives each worker the actions of the machines whose readings it holds,
and the keeper applies them to that partition's state (:meth:`StateKeeper.operator`). The
timer closes the windows of silent sources, checkpoints every ``checkpoint_interval_s``
and rewrites the status file.

State survives a crash and moves with its partition. Per input partition the keeper writes
a checkpoint (the partition's windows, dedup, detector, alarm and rule state, and the next
input offsets) to the compacted ``<prefix>.streams-state`` topic, and commits the input
offsets only then: Faust's own offset commits are off (``acks=False`` on the readings and
operator topics), so nothing commits ahead of the saved state. On a revocation the
partition is checkpointed; on an assignment it is restored from its newest checkpoint and
the consumer seeks there. ``guarantee="at_least_once"`` may send a window again after a
crash (the same values; ClickHouse collapses them); ``"exactly_once"`` puts results,
checkpoint and offset in one Kafka transaction per partition
(:class:`streams.outputs.ExactlyOnceOutputs`; Faust's own exactly-once is not used:
faust-streaming's has open bugs that send outside the transaction).
``checkpoint_interval_s=0`` keeps state in memory only.

On a graceful stop the keeper checkpoints; with ``flush_on_stop`` (memory only: always) it
first closes every open window, for the end of a run rather than a restart.

Run it with :func:`run_worker` (foreground, until SIGINT/SIGTERM).
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import faust
from faust.types import TP

from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.health import HealthConfig, KafkaProbe, StageHealth
from schemas.kafka_errors import explain_kafka_error, is_config_error
from schemas.signing import Signer
from schemas.status import write_status
from schemas.topics import Topics
from streams.checkpoints import StateTopic
from streams.exceptions import StreamsError, WorkerError
from streams.faust_consumer import PromptTransport
from streams.keeper import StateKeeper
from streams.observe import WorkerProbe
from streams.outputs import AtLeastOnceOutputs, ExactlyOnceOutputs, Outputs
from streams.processor import FrameProcessor
from streams.twin_app import add_twin_agents

__all__ = ["GUARANTEES", "Guarantee", "create_app", "quiet_worker", "run_worker"]

logger = logging.getLogger(__name__)

TICK_S = 1.0
Guarantee = Literal["at_least_once", "exactly_once"]
GUARANTEES: tuple[str, ...] = ("at_least_once", "exactly_once")


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


class _FaustOffsets:
    """The keeper's view of Faust's consumer: committed offsets, commits and seeks of the
    readings topic, by partition."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    async def committed(self, partitions: Collection[int]) -> dict[int, int | None]:
        got = await self.app.consumer.seek_to_committed()  # type: ignore[attr-defined]
        return {tp.partition: (off if off is not None and off >= 0 else None)
                for tp, off in got.items() if tp.topic == self.topic}

    async def commit(self, offsets: dict[int, int]) -> None:
        # Consumer._commit commits exactly these offsets (Consumer.commit would commit
        # Faust's acked offsets, which are off for the readings topic)
        ok = await self.app.consumer._commit(  # type: ignore[attr-defined]
            {TP(self.topic, p): o for p, o in offsets.items()})
        if not ok:
            logger.warning("committing %s of %s failed (a rebalance is under way); the "
                           "checkpoint stands, the offsets are committed on assignment",
                           offsets, self.topic)

    async def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        await self.app.consumer.seek(TP(topic or self.topic, partition), offset)

    async def commit_inputs(self, offsets: dict[str, dict[int, int]]) -> None:
        ok = await self.app.consumer._commit(  # type: ignore[attr-defined]
            {TP(t, p): o for t, by_p in offsets.items() for p, o in by_p.items()})
        if not ok:
            logger.warning("committing the operator topics' offsets %s failed (a rebalance "
                           "is under way); the checkpoint stands", offsets)

    def highwater(self, partition: int) -> int | None:
        try:
            hw = self.app.consumer.highwater(TP(self.topic, partition))
        except Exception:  # not assigned (any more), or no fetch yet
            return None
        return None if hw is None or hw < 0 else int(hw)


def _outputs(guarantee: str, bootstrap: str, topics: Topics, app_id: str,
             kafka_config: Mapping[str, Any] | None, signer: Signer | None,
             interval_s: float) -> Outputs:
    if guarantee == "exactly_once":
        # a transaction spans one checkpoint interval: leave it room before Kafka aborts it
        return ExactlyOnceOutputs(bootstrap, topics, app_id=app_id, kafka_config=kafka_config,
                                  signer=signer,
                                  transaction_timeout_ms=max(60_000, int(interval_s * 4000)))
    if guarantee == "at_least_once":
        return AtLeastOnceOutputs(bootstrap, topics, app_id=app_id, kafka_config=kafka_config,
                                  signer=signer)
    raise StreamsError(f"processing guarantee {guarantee!r} is not known; use "
                       "at_least_once or exactly_once")


def create_app(
    catalog: Catalog,
    *,
    bootstrap: str,
    topics: Topics,
    app_id: str = "millstream-streams",
    kafka_config: Mapping[str, Any] | None = None,
    status_file: Path | None = None,
    signer: Signer | None = None,
    guarantee: str = "at_least_once",
    checkpoint_interval_s: float = 5.0,
    flush_on_stop: bool = False,
    session_timeout_s: float = 30.0,
    health: StageHealth | None = None,
) -> faust.App:
    """A Faust app running the streams stage; its FrameProcessor is ``app.processor``, its
    StateKeeper ``app.keeper``. Commands are signed by ``signer`` (the executor refuses
    unsigned ones). ``guarantee`` is ``at_least_once`` or ``exactly_once``; a worker that
    dies is replaced after ``session_timeout_s``. ``health`` gets the status every
    second, the frame sizes and the processing times."""
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
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.5, min(3.0, session_timeout_s / 10)),
        consumer_max_fetch_size=10_485_760,
        datadir=Path(tempfile.gettempdir()) / f"faust-{app_id}",
    )
    app.transport = PromptTransport(app.conf.broker_consumer, app)  # no 1.5 s fetch stalls
    proc = FrameProcessor(catalog)
    outputs = _outputs(guarantee, bootstrap, topics, app_id, kafka_config, signer,
                       checkpoint_interval_s)
    state = (StateTopic(bootstrap, topics, app_id=app_id, kafka_config=kafka_config)
             if checkpoint_interval_s > 0 else None)
    keeper = StateKeeper(proc, outputs, _FaustOffsets(app, topics.readings), app_id=app_id,
                         state=state, interval_s=checkpoint_interval_s)
    app.processor = proc  # type: ignore[attr-defined]
    app.keeper = keeper  # type: ignore[attr-defined]
    health = health or StageHealth("streams", context={"topic": topics.readings})
    probe = WorkerProbe(health, topics.readings, (s.name for s in catalog.sources))
    # acks=False: Faust never commits this topic's offsets; the keeper does, after each
    # checkpoint
    readings = app.topic(topics.readings, partitions=topics.partitions(topics.readings),
                         key_type=bytes, value_type=bytes, acks=False)
    add_twin_agents(app, catalog, topics, bootstrap=bootstrap, kafka_config=kafka_config)
    operator_topics = {t: app.topic(t, partitions=topics.partitions(t), key_type=bytes,
                                    value_type=bytes, acks=False)
                       for t in (topics.alarm_actions, topics.anomaly_feedback)}

    def status(running: bool) -> None:
        doc = {"stage": "streams", "app_id": app_id, "running": running, "at": now_ms(),
               "guarantee": guarantee, "partitions": keeper.partitions,
               "offsets": keeper.offsets(), **keeper.stats, **proc.counters(),
               "lag": probe.lag(app.consumer if running else None),
               "twin": app.twin_counters()}  # type: ignore[attr-defined]
        write_status(status_file, health.report(doc))

    @app.agent(readings)
    async def process(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            t0, n0 = time.perf_counter(), proc.count["readings"]
            await keeper.process(msg.key, msg.value, msg.topic, msg.partition, msg.offset)
            probe.seen(msg.partition, msg.offset, msg.key, proc.count["readings"] - n0,
                       time.perf_counter() - t0)

    def operator_agent(kind: str, topic: str) -> None:
        @app.agent(operator_topics[topic], name=f"{app_id}.{kind}")
        async def apply(stream: faust.StreamT) -> None:
            async for event in stream.events():
                msg = event.message
                await keeper.operator(kind, msg.value, msg.topic, msg.partition, msg.offset)

    operator_agent("action", topics.alarm_actions)
    operator_agent("feedback", topics.anomaly_feedback)

    @app.timer(interval=min(TICK_S, checkpoint_interval_s or TICK_S))
    async def tick() -> None:
        await keeper.tick()
        status(running=True)

    def mine(tps: Collection[TP]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == topics.readings)

    async def revoked(sender: Any, revoked: Collection[TP], **kwargs: Any) -> None:
        await keeper.revoked(mine(revoked))

    async def assigned(sender: Any, assigned: Collection[TP], **kwargs: Any) -> None:
        await keeper.assigned(mine(assigned))
        logger.info("assigned partitions %s of %s", keeper.partitions, topics.readings)

    async def stop(sender: Any, *args: Any, **kwargs: Any) -> None:
        flush = flush_on_stop or checkpoint_interval_s <= 0
        out = await keeper.stop(flush=flush)
        logger.info("shutdown: %s, flushed %d windows", "checkpointed" if state else
                    "offsets committed", sum(len(f) for f in out.aggregate_frames))
        status(running=False)

    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stop)  # type: ignore[arg-type]
    app.streams_status = status  # type: ignore[attr-defined]
    del process, tick
    return app


def quiet_worker(app: faust.App, loglevel: str = "warn") -> faust.Worker:
    """A Faust worker without the terminal spinner. The spinner's log handler sets the
    root logger to DEBUG, so every debug call in aiokafka and Faust (one per message
    sent, among others) builds a log record: ~8% of the worker's time at 10,000 tags."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


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
    guarantee: str = "at_least_once",
    checkpoint_interval_s: float = 5.0,
    flush_on_stop: bool = False,
    session_timeout_s: float = 30.0,
    health: HealthConfig | None = None,
) -> None:
    """Run the streams worker in the foreground until SIGINT/SIGTERM; ``health`` serves
    /healthz, /readyz (Kafka) and /metrics."""
    monitor = StageHealth("streams", health, kafka=KafkaProbe(bootstrap, kafka_config),
                          context={"topic": topics.readings})
    app = create_app(catalog, bootstrap=bootstrap, topics=topics, app_id=app_id,
                     kafka_config=kafka_config, status_file=status_file, signer=signer,
                     guarantee=guarantee, checkpoint_interval_s=checkpoint_interval_s,
                     flush_on_stop=flush_on_stop, session_timeout_s=session_timeout_s,
                     health=monitor)
    worker = quiet_worker(app, loglevel)
    logger.info("streams worker %s on %s, reading %s (%s, checkpoints every %ss)", app_id,
                bootstrap, topics.readings, guarantee, checkpoint_interval_s)
    monitor.start()
    refusals = _Refusals()  # aiokafka logs a refused login; the exit should say it too
    logging.getLogger("aiokafka").addHandler(refusals)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            why = (explain_kafka_error(None, refusals.last, bootstrap, kafka_config)
                   if refusals.last else f"the log above says why (Kafka at {bootstrap})")
            raise WorkerError(f"the streams worker {app_id} stopped with exit code "
                              f"{exc.code}: {why}", app_id=app_id, bootstrap=bootstrap) from exc
    finally:
        logging.getLogger("aiokafka").removeHandler(refusals)
        app.streams_status(running=False)  # type: ignore[attr-defined]
        monitor.stop()


class _Refusals(logging.Handler):
    """Keeps the last refused login or failed TLS handshake aiokafka logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if is_config_error(None, text):
            self.last = text
