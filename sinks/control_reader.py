"""Reading the executor's durable state back from Kafka: results, then the control topic.

:func:`load_results` reads the compacted ``command-results`` topic from the beginning to
its end once, before the executor consumes commands: the first result of every command
ever decided, so a redelivery after a crash or restart is answered, never written again.
:class:`ControlReader` follows the compacted ``control`` topic in a thread of its own, from
the beginning and then live, feeding kill switches and approvals as records arrive (a
switch takes effect within one poll, 0.1 s). The executor starts consuming commands only
once it has caught up.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from schemas.control import ControlKind, ControlRecord
from schemas.events import CommandResult
from schemas.exceptions import ContractError
from schemas.kafka_errors import KafkaErrorLog
from schemas.signing import TrustedKeys, verify_doc
from sinks.approvals import Approvals
from sinks.exceptions import SinkError
from sinks.killswitch import KillSwitches

__all__ = ["ControlReader", "load_results"]

logger = logging.getLogger(__name__)

_POLL_S = 0.1


def _consumer(bootstrap: str, topic: str,
              conf: dict[str, str]) -> tuple[Consumer, list[TopicPartition]]:
    """A group-less consumer assigned to every partition of ``topic`` from the beginning."""
    errors = KafkaErrorLog(bootstrap, conf, logger)
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "enable.partition.eof": False, **conf, "error_cb": errors})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        consumer.poll(0)  # serves error_cb: why the broker did not answer
        consumer.close()
        why = errors.config_error or errors.last or exc
        raise SinkError(f"cannot read {topic}: {why}") from exc
    if meta is None or meta.error is not None or not meta.partitions:
        consumer.close()
        raise SinkError(f"topic {topic} does not exist; create millstream's topics "
                        "(`millstream kafka` does) before starting the executor")
    parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
    consumer.assign(parts)
    return consumer, parts


# a partition without a leader for a moment (just created, or a broker restarting)
_LEADERLESS = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
               KafkaError.UNKNOWN_TOPIC_OR_PART}


def _ends(consumer: Consumer, parts: list[TopicPartition],
          timeout_s: float = 30.0) -> dict[int, int]:
    """Partition -> the offset of its end now (high watermark), for non-empty partitions.

    A retriable error (a topic created a moment ago whose leader is still being elected:
    NOT_LEADER_FOR_PARTITION) is asked again until ``timeout_s``, not raised at once."""
    out = {}
    deadline = time.monotonic() + timeout_s
    for tp in parts:
        while True:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                code = err.code() if isinstance(err, KafkaError) else None
                if code not in _LEADERLESS or time.monotonic() > deadline:
                    raise
                logger.info("end of %s[%d] not known yet (%s); asking again", tp.topic,
                            tp.partition, err)
                time.sleep(0.2)
        if high > low:
            out[tp.partition] = high
    return out


def _read_to_end(consumer: Consumer, parts: list[TopicPartition],
                 timeout_s: float) -> Iterator[Message]:
    todo = _ends(consumer, parts)
    deadline = time.monotonic() + timeout_s
    while todo:
        if time.monotonic() > deadline:
            raise SinkError(f"could not read {parts[0].topic} to its end in {timeout_s:.0f} s "
                            f"(partitions left {sorted(todo)}); check Kafka")
        msg = consumer.poll(_POLL_S)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("reading %s: %s", msg.topic(), err)
            continue
        yield msg
        p, off = msg.partition() or 0, msg.offset() or 0
        if p in todo and off + 1 >= todo[p]:
            del todo[p]


def load_results(bootstrap: str, topic: str, conf: dict[str, str],
                 timeout_s: float = 60.0) -> dict[str, CommandResult]:
    """Every command id's latest result on the (compacted) results topic."""
    consumer, parts = _consumer(bootstrap, topic, conf)
    results: dict[str, CommandResult] = {}
    try:
        for msg in _read_to_end(consumer, parts, timeout_s):
            if msg.value() is None:
                continue
            try:
                result = CommandResult.decode(msg.value())
            except ContractError as exc:
                logger.warning("results topic %s@%s: unreadable result skipped: %s", topic,
                               msg.offset(), exc)
                continue
            results[result.command_id] = result
    finally:
        consumer.close()
    logger.info("executor: %d command results reloaded from %s", len(results), topic)
    return results


class ControlReader:
    """Follows the control topic in a daemon thread. Lifecycle: ``start()`` (returns once
    caught up), the executor's work, ``stop()``."""

    def __init__(self, bootstrap: str, topic: str, conf: dict[str, str], trusted: TrustedKeys,
                 switches: KillSwitches, approvals: Approvals) -> None:
        self.bootstrap, self.topic, self.conf = bootstrap, topic, conf
        self.trusted, self.switches, self.approvals = trusted, switches, approvals
        self.inflight: set[str] = set()  # writes under way when the last executor stopped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        consumer, parts = _consumer(self.bootstrap, self.topic, self.conf)
        try:
            for msg in _read_to_end(consumer, parts, timeout_s):
                self._on_message(msg)
        except BaseException:
            consumer.close()
            raise
        logger.info("executor: control state loaded from %s (kill switches on: %s)",
                    self.topic, ", ".join(self.switches.active()) or "none")
        self._thread = threading.Thread(target=self._follow, args=(consumer,),
                                        name="control-reader", daemon=True)
        self._thread.start()

    def _follow(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                msg = consumer.poll(_POLL_S)
                if msg is not None and msg.error() is None:
                    self._on_message(msg)
        except BaseException as exc:  # the executor checks alive() and stops: fail closed
            logger.exception("control reader stopped")
            self._error = exc
        finally:
            consumer.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _on_message(self, msg: Message) -> None:
        key = (msg.key() or b"").decode("utf-8", "replace")
        kind, _, target = key.partition("/")
        value = msg.value()
        record: ControlRecord | None = None
        if value is not None:
            try:
                record = ControlRecord.decode(value)
            except ContractError as exc:
                logger.error("control topic %s@%s: unreadable record %r ignored: %s",
                             self.topic, msg.offset(), key, exc)
                return
            kind, target = record.kind, record.target
        self._apply(kind, target, record)

    def _apply(self, kind: str, target: str, record: ControlRecord | None) -> None:
        if kind == ControlKind.KILL_SWITCH.value:
            if record is None:  # a tombstone can only release: treat as unsigned "off"
                record = ControlRecord(kind, target, False, "tombstone", 0)
            self.switches.apply(record, verify_doc(record.to_dict(), self.trusted) is None)
        elif kind == ControlKind.INFLIGHT.value:
            (self.inflight.add if record is not None else self.inflight.discard)(target)
        elif kind in (ControlKind.APPROVAL.value, ControlKind.PENDING.value):
            self.approvals.on_record(record, kind, target)
        else:
            logger.warning("control topic %s: unknown kind %r ignored", self.topic, kind)

    def status(self) -> dict[str, Any]:
        return {"kill_switches": self.switches.active()}
