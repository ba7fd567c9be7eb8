"""Where the worker's results and checkpoints go: Kafka producers for each guarantee.

:class:`AtLeastOnceOutputs`: one idempotent producer. A checkpoint first waits until every
result sent so far is acknowledged, then writes the checkpoint and waits for it; only
then may the caller commit the input offset. A crash replays from the last checkpoint, so
results after it may be sent again (the same values: ClickHouse's ReplacingMergeTree
collapses them; anomalies, alarm episodes and commands carry ids derived from their
window; a twin part is the machine's latest state and a KPI record its shift's tally so
far, both replaced by the next).

:class:`ExactlyOnceOutputs`: one transactional producer per input partition, with a
``transactional.id`` fixed per (app, topic, partition), so a new owner fences the old one
and aborts its open transaction at once. Results, the checkpoint and the input offset
commit in one transaction: a ``read_committed`` consumer sees each result once, and sees
them at each checkpoint.

Lifecycle: ``start()``; ``open(p)`` when a partition is assigned, ``close(p)`` when it
goes; ``send(p, output)`` per result; ``checkpoint(p, records, offset)``; ``stop()``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.signing import Signer
from schemas.topics import Topics
from streams.exceptions import StateError, StreamsError
from streams.processor import Output

__all__ = ["AtLeastOnceOutputs", "ExactlyOnceOutputs", "Outputs", "aiokafka_security"]

logger = logging.getLogger(__name__)

Record = tuple[bytes, bytes | memoryview | None]  # (key, value); None: a tombstone


def aiokafka_security(conf: Mapping[str, Any]) -> dict[str, Any]:
    """aiokafka client options from librdkafka-style security options (Settings)."""
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise StreamsError(f"security.protocol={protocol!r} is not supported; use PLAINTEXT, "
                           "SSL, SASL_PLAINTEXT or SASL_SSL")
    out: dict[str, Any] = {"security_protocol": protocol}
    if "SSL" in protocol:
        out["ssl_context"] = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
    if protocol.startswith("SASL"):
        out.update(sasl_mechanism=conf.get("sasl.mechanism", "PLAIN"),
                   sasl_plain_username=conf.get("sasl.username"),
                   sasl_plain_password=conf.get("sasl.password"))
    return out


class Outputs:
    """What both guarantees share: turning an :class:`Output` into messages."""

    transactional = False

    def __init__(self, bootstrap: str, topics: Topics, *, app_id: str,
                 kafka_config: Mapping[str, Any] | None = None,
                 signer: Signer | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.app_id = app_id
        self.signer = signer
        self.options = {"bootstrap_servers": bootstrap, "acks": "all",
                        "enable_idempotence": True, "linger_ms": 5,
                        **aiokafka_security(kafka_config or {})}
        self.failed = 0  # results Kafka refused (since start)

    def messages(self, out: Output) -> list[tuple[str, bytes, bytes]]:
        t = self.topics
        msgs = [(t.aggregates, f.key(), f.encode()) for f in out.aggregate_frames]
        msgs += [(t.late, x.key(), x.encode()) for x in out.late]
        msgs += [(t.anomalies, a.key(), a.encode()) for a in out.anomalies]
        msgs += [(t.alarms, a.key(), a.encode()) for a in out.alarms]
        for cmd in out.commands:
            signed = cmd.signed_by(self.signer) if self.signer is not None else cmd
            msgs.append((t.commands, cmd.key(), signed.encode()))
        msgs += [(t.deadletter, d.key_bytes(), d.encode()) for d in out.deadletters]
        msgs += [(t.twin_inputs, p.key(), p.encode()) for p in out.twin]  # keyed by machine
        msgs += [(t.kpis, k.key(), k.encode()) for k in out.kpis]
        msgs += [(t.spc, r.key(), r.encode()) for r in out.spc]
        return msgs

    def _producer(self, partition: int) -> AIOKafkaProducer:
        raise NotImplementedError

    async def send(self, partition: int, out: Output) -> None:
        """Send the results of processing ``partition``'s messages (not awaited: a
        checkpoint waits for them)."""
        producer = self._producer(partition)
        for topic, key, value in self.messages(out):
            fut = await producer.send(topic, value, key=key)
            fut.add_done_callback(self._done)

    def _done(self, fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.failed += 1
            logger.error("Kafka refused a result of the streams worker: %s", fut.exception())

    async def _write(self, producer: AIOKafkaProducer, records: Sequence[Record],
                     partition: int) -> None:
        for key, value in records:
            await producer.send(self.topics.streams_state, value, key=key, partition=partition)

    async def start(self) -> None: ...

    async def open(self, partition: int) -> None: ...

    async def close(self, partition: int) -> None: ...

    async def checkpoint(self, partition: int, records: Sequence[Record], state_partition: int,
                         offset: int, inputs: Mapping[str, int] | None = None) -> None:
        raise NotImplementedError

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


class AtLeastOnceOutputs(Outputs):
    """One idempotent producer for every partition's results and checkpoints."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._main: AIOKafkaProducer | None = None
        self._failed_at_checkpoint = 0

    def _producer(self, partition: int) -> AIOKafkaProducer:
        if self._main is None:
            raise StreamsError("the worker's producer is not started")
        return self._main

    async def start(self) -> None:
        self._main = AIOKafkaProducer(**self.options)
        await self._main.start()

    async def flush(self) -> None:
        if self._main is not None:
            await self._main.flush()

    async def checkpoint(self, partition: int, records: Sequence[Record], state_partition: int,
                         offset: int, inputs: Mapping[str, int] | None = None) -> None:
        """Every result sent so far acknowledged, then the checkpoint: the caller commits
        ``offset`` (and ``inputs``) after this returns."""
        producer = self._producer(partition)
        await producer.flush()
        if self.failed != self._failed_at_checkpoint:
            lost, self._failed_at_checkpoint = self.failed - self._failed_at_checkpoint, \
                self.failed
            raise StateError(f"{lost} results of the streams worker were refused by Kafka "
                             f"since the last checkpoint (see the log); partition "
                             f"{partition} is not checkpointed, so a restart sends them again")
        futures = [await producer.send(self.topics.streams_state, v, key=k,
                                       partition=state_partition) for k, v in records]
        await producer.flush()
        for fut in futures:
            fut.result()  # raises what Kafka answered, if it refused the checkpoint

    async def stop(self) -> None:
        if self._main is not None:
            await self._main.stop()
            self._main = None


class ExactlyOnceOutputs(Outputs):
    """A transactional producer per input partition; one transaction per checkpoint."""

    transactional = True

    def __init__(self, *args: Any, transaction_timeout_ms: int = 60_000,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transaction_timeout_ms = transaction_timeout_ms
        self._by_partition: dict[int, AIOKafkaProducer] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}.{self.topics.readings}.{partition}"

    def _producer(self, partition: int) -> AIOKafkaProducer:
        try:
            return self._by_partition[partition]
        except KeyError:
            raise StreamsError(f"no transactional producer for partition {partition}: it "
                               "is not assigned to this worker") from None

    async def open(self, partition: int) -> None:
        """Start (or restart) the partition's producer: its ``init_transactions`` fences
        a previous owner and aborts that owner's open transaction."""
        await self.close(partition)
        producer = AIOKafkaProducer(transactional_id=self.transactional_id(partition),
                                    transaction_timeout_ms=self.transaction_timeout_ms,
                                    **self.options)
        await producer.start()
        await producer.begin_transaction()
        self._by_partition[partition] = producer

    async def close(self, partition: int) -> None:
        producer = self._by_partition.pop(partition, None)
        if producer is None:
            return
        try:
            await producer.abort_transaction()  # what was sent since the last checkpoint
        except Exception as exc:  # fenced or broker gone: the transaction dies either way
            logger.warning("aborting the open transaction of partition %d: %s", partition, exc)
        await producer.stop()

    async def checkpoint(self, partition: int, records: Sequence[Record], state_partition: int,
                         offset: int, inputs: Mapping[str, int] | None = None) -> None:
        """Commit the transaction: the results so far, the checkpoint, ``offset`` and the
        operator topics' ``inputs`` (topic -> next offset of ``partition``)."""
        producer = self._producer(partition)
        await self._write(producer, records, state_partition)
        offsets = {TopicPartition(self.topics.readings, partition): offset}
        offsets.update({TopicPartition(t, partition): o for t, o in (inputs or {}).items()})
        await producer.send_offsets_to_transaction(offsets, self.app_id)
        await producer.commit_transaction()
        await producer.begin_transaction()

    async def flush(self) -> None:
        for producer in self._by_partition.values():
            await producer.flush()

    async def stop(self) -> None:
        for partition in list(self._by_partition):
            await self.close(partition)
