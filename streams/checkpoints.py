"""The state topic on Kafka: created by the worker, read when a partition is assigned.

Input partition ``p``'s checkpoints live on state partition ``p % n`` (``n`` = the state
topic's partitions, as many as the input topic's when the worker creates it), so taking a
partition over reads one state partition, not all of them. Reading is ``read_committed``:
a checkpoint of an aborted transaction (exactly-once) is never restored.

Lifecycle: ``StateTopic(...)``; ``await start()`` (creates the topic if missing);
``await load(p)`` per assigned partition; ``await stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.topics import Topics
from streams.exceptions import StateError
from streams.outputs import aiokafka_security
from streams.state import CheckpointReader, manifest_key

__all__ = ["StateTopic"]

logger = logging.getLogger(__name__)


class StateTopic:
    """Reads the newest checkpoint of an input partition from the compacted state topic."""

    def __init__(self, bootstrap: str, topics: Topics, *, app_id: str,
                 kafka_config: Mapping[str, Any] | None = None,
                 load_timeout_s: float = 120.0) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.topic = topics.streams_state
        self.app_id = app_id
        self.kafka_config = dict(kafka_config or {})
        self.load_timeout_s = load_timeout_s
        self.partitions = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.partitions = await asyncio.to_thread(self._ensure_topic)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
            **aiokafka_security(self.kafka_config))
        await self._consumer.start()

    def _ensure_topic(self) -> int:
        """Create the state topic where missing; its partition count."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 4,
                             **self.kafka_config})
        meta = admin.list_topics(timeout=30).topics
        inputs = len(meta[self.topics.readings].partitions) if self.topics.readings in meta \
            else self.topics.partitions(self.topics.readings)
        if self.topic not in meta:
            new = NewTopic(self.topic, num_partitions=max(inputs, 1), replication_factor=-1,
                           config=self.topics.config(self.topic))
            try:
                admin.create_topics([new], operation_timeout=30)[self.topic].result()
                logger.info("created the state topic %s (%d partitions)", self.topic, inputs)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StateError(f"could not create the state topic {self.topic} on "
                                     f"{self.bootstrap}: {exc}; create it compacted, with "
                                     f"{inputs} partitions") from exc
            meta = admin.list_topics(topic=self.topic, timeout=30).topics
        have = len(meta[self.topic].partitions)
        if have < inputs:
            logger.warning("the state topic %s has %d partitions for %d input partitions: "
                           "several input partitions share one, and taking one over reads "
                           "theirs too; give it %d", self.topic, have, inputs, inputs)
        return have

    def state_partition(self, partition: int) -> int:
        return partition % self.partitions

    async def load(self, partition: int) -> CheckpointReader:
        """Read input partition ``partition``'s records of the state topic to their end;
        the reader gives the newest checkpoint (or None) and the stale chunk keys."""
        consumer = self._consumer
        if consumer is None:
            raise StateError("the state topic reader is not started")
        tp = TopicPartition(self.topic, self.state_partition(partition))
        where = f"{self.topic}[{tp.partition}]"
        reader = CheckpointReader(self.app_id, partition, where=where)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + self.load_timeout_s
        records = 0
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise StateError(
                    f"reading the checkpoints of partition {partition} from {where} took "
                    f"over {self.load_timeout_s:.0f}s (at offset "
                    f"{await consumer.position(tp)} of {end}); is Kafka at {self.bootstrap} "
                    "overloaded, or the topic not compacted?")
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1000)
            for msg in batch.get(tp, []):
                if msg.offset < end:
                    reader.add(msg.key, msg.value)
                    records += 1
        logger.info("read %d records of %s for partition %d (key %s)", records, where,
                    partition, manifest_key(self.app_id, partition).decode())
        return reader

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
