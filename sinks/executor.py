"""The command executor: commands from Kafka, through the safety gateway, onto the machines.

For each message on ``<prefix>.commands``: decode the :class:`Command` (a malformed one goes
to the dead-letter topic), ask the :class:`SafetyGateway` (a refusal becomes a "rejected"
result and nothing is written), else write the setpoint, read it back and compare. The
:class:`CommandResult` goes to ``<prefix>.command-results`` keyed by ``command_id``; only
then is the command's offset committed, so a crash redelivers rather than loses it.

Lifecycle: :func:`run_executor` blocks until ``stop`` is set, writing its counters to
``status_file`` every second and once more when it stops, and returns them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from schemas.catalog import Catalog
from schemas.events import Command, CommandResult, CommandStatus, DeadLetter, now_ms
from schemas.exceptions import ContractError
from schemas.status import write_status
from schemas.topics import Topics
from sinks.devices import DeviceError, DevicePool
from sinks.safety import SafetyGateway

__all__ = ["STAGE", "matches", "run_executor"]

logger = logging.getLogger(__name__)

STAGE = "executor"  # the stage name in dead-letter records
_POLL_S = 0.5
_STATUS_EVERY_S = 1.0
_FLUSH_S = 5.0
_REMEMBERED_RESULTS = 100_000  # results kept to answer a redelivered command identically


def matches(requested: float, readback: float) -> bool:
    """Whether the device holds what was written, within float32 and rounding noise."""
    return abs(readback - requested) <= 1e-3 * max(1.0, abs(requested))


def run_executor(
    catalog: Catalog,
    *,
    bootstrap: str,
    topics: Topics,
    endpoints: dict[str, str] | None = None,
    group_id: str = "millstream-executor",
    kafka_config: dict[str, str] | None = None,
    status_file: Path | None = None,
    stop: threading.Event | None = None,
    max_rate_per_setpoint: int = 6,
    attempts: int = 3,
    pki_dir: Path | None = None,
) -> dict[str, Any]:
    """Execute commands until ``stop`` is set; returns the final counters.

    ``endpoints`` maps a source name to the endpoint to use instead of the catalog's;
    ``kafka_config`` is added to the consumer's and producer's librdkafka settings (TLS,
    SASL); ``attempts`` bounds the writes of one command when the device errors;
    ``pki_dir`` holds the OPC-UA certificates (a secured OPC-UA source needs it).
    """
    executor = _Executor(
        catalog, bootstrap=bootstrap, topics=topics, endpoints=endpoints, group_id=group_id,
        kafka_config=kafka_config, status_file=status_file, stop=stop or threading.Event(),
        max_rate_per_setpoint=max_rate_per_setpoint, attempts=attempts, pki_dir=pki_dir,
    )
    return asyncio.run(executor.run())


class _Executor:
    def __init__(
        self,
        catalog: Catalog,
        *,
        bootstrap: str,
        topics: Topics,
        endpoints: dict[str, str] | None,
        group_id: str,
        kafka_config: dict[str, str] | None,
        status_file: Path | None,
        stop: threading.Event,
        max_rate_per_setpoint: int,
        attempts: int,
        remembered_results: int = _REMEMBERED_RESULTS,
        pki_dir: Path | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts={attempts}: a command needs at least 1 write attempt")
        self.catalog = catalog
        self.topics = topics
        self.status_file = status_file
        self.stop = stop
        self.attempts = attempts
        self.gateway = SafetyGateway(catalog, max_rate_per_setpoint=max_rate_per_setpoint)
        self.devices = DevicePool(catalog, endpoints, pki_dir)
        # the one memory of commands seen: a redelivered command is never written twice and
        # gets its first result again (command_results is a ReplacingMergeTree by command_id,
        # so a second, different result would replace the first in the audit)
        self.remembered_results = remembered_results
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        self.counters = dict.fromkeys(
            ("received", "applied", "rejected", "failed", "deadlettered"), 0
        )
        extra = dict(kafka_config or {})
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest", **extra,
        })
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, **extra,
        })

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.consumer.subscribe([self.topics.commands])
        logger.info("executor: consuming %s, results to %s",
                    self.topics.commands, self.topics.command_results)
        next_status = 0.0
        try:
            while not self.stop.is_set():
                msg = await loop.run_in_executor(None, self.consumer.poll, _POLL_S)
                if msg is not None:
                    await self._on_message(msg)
                if time.monotonic() >= next_status:
                    self._write_status()
                    next_status = time.monotonic() + _STATUS_EVERY_S
        finally:
            await self.devices.close()
            self.consumer.close()
            self.producer.flush(_FLUSH_S)
            self._write_status()
        return self.status()

    async def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("executor: consumer error on %s: %s", self.topics.commands, err)
            return
        self.counters["received"] += 1
        try:
            command = Command.decode(msg.value())
        except ContractError as exc:
            published = self._dead_letter(msg, exc.reason, exc.detail)
        except Exception as exc:  # e.g. RecursionError on deeply nested JSON: never crash
            published = self._dead_letter(msg, "decode-error", repr(exc)[:500])
        else:
            result = self._results.get(command.command_id)
            if result is not None:
                logger.warning("command %s was redelivered; publishing its result again (%s)",
                               command.command_id, result.status)
            else:
                result = await self._execute(command)
                self._results[command.command_id] = result
                while len(self._results) > self.remembered_results:
                    self._results.popitem(last=False)
                self.counters[result.status] += 1
                log = logger.info if result.status == CommandStatus.APPLIED else logger.warning
                log("command %s %s=%g: %s (%s)", result.command_id, result.setpoint,
                    result.requested, result.status, result.detail)
            published = self._publish(
                self.topics.command_results, result.key(), result.encode()
            )
        if published:
            try:
                self.consumer.commit(message=msg, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: the next owner redelivers it
                logger.warning("executor: cannot commit %s[%s]@%s: %s; the command may be "
                               "redelivered (its result is published)", msg.topic(),
                               msg.partition(), msg.offset(), exc)

    async def _execute(self, command: Command) -> CommandResult:
        """Gateway, then write and read back; never raises for a well-formed command."""
        try:
            verdict = self.gateway.check(command, now_ms())
            if not verdict.allowed:
                return _result(command, command.setpoint, CommandStatus.REJECTED, verdict.reason)
            path = self.catalog.resolve(command.setpoint)
            return await self._write(command, path)
        except Exception as exc:  # a bug here must not stop the plant's other commands
            logger.exception("executor: command %s failed unexpectedly", command.command_id)
            return _result(command, command.setpoint, CommandStatus.FAILED,
                           f"executor error: {exc!r}; see the executor's log")

    async def _write(self, command: Command, path: str) -> CommandResult:
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                readback = await self.devices.write_and_read_back(path, command.value)
            except DeviceError as exc:
                error = f"{exc} (attempt {attempt} of {self.attempts})"
                logger.warning("command %s: %s", command.command_id, error)
                if self.stop.is_set() or now_ms() >= command.expires_at:
                    break
                await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
                continue
            if matches(command.value, readback):
                return _result(command, path, CommandStatus.APPLIED,
                               f"wrote {command.value:g}, read back {readback:g}", readback)
            return _result(command, path, CommandStatus.FAILED,
                           f"wrote {command.value:g} but the device reads back {readback:g}; "
                           "check the device's limits or whether another writer owns the tag",
                           readback)
        return _result(command, path, CommandStatus.FAILED,
                       f"device error, gave up: {error}; check the device and its endpoint")

    # -- Kafka out ---------------------------------------------------------------------------
    def _dead_letter(self, msg: Message, reason: str, detail: str) -> bool:
        dl = DeadLetter.of(
            stage=STAGE, reason=reason, detail=detail, topic=msg.topic() or "",
            partition=msg.partition() or 0, offset=msg.offset() or 0,
            key=msg.key(), value=msg.value(),
        )
        self.counters["deadlettered"] += 1
        logger.warning("executor: dead-lettered %s[%s]@%s: %s: %s", dl.topic, dl.partition,
                       dl.offset, reason, detail)
        return self._publish(self.topics.deadletter, dl.key_bytes(), dl.encode())

    def _publish(self, topic: str, key: bytes, value: bytes) -> bool:
        """Produce and wait for Kafka's acknowledgement, retrying until it comes or we stop.

        False means we were stopped first: the caller must not commit the command's offset.
        """
        while True:
            errors: list[str] = []
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=_collect(errors))
                pending = self.producer.flush(_FLUSH_S)
            except (BufferError, KafkaException) as exc:
                errors.append(repr(exc))
                pending = 0
            if pending == 0 and not errors:
                return True
            logger.error("executor: cannot publish to %s (%s); retrying. Check that Kafka is "
                         "up and the topic exists", topic, "; ".join(errors) or "no ack")
            if self.stop.wait(1.0):
                return False

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {**self.counters, "updated_at": now_ms()}

    def _write_status(self) -> None:
        write_status(self.status_file, self.status())


def _collect(errors: list[str]) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback that appends the delivery error, if any, to ``errors``."""

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    return delivered


def _result(command: Command, setpoint: str, status: CommandStatus, detail: str,
            readback: float | None = None) -> CommandResult:
    return CommandResult(
        command_id=command.command_id, setpoint=setpoint, requested=command.value,
        readback=readback, status=status.value, detail=detail, executed_at=now_ms(),
    )
