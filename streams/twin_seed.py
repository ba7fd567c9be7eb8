"""Reading a compacted topic to its end: the newest value per key.

The twin merger seeds itself from the twin topic after a restart or a rebalance (the topic
is its changelog), as another team's reader does with kcat. A plain consumer with no group:
it assigns every partition from the beginning and stops at the high watermarks it saw
when it started.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from schemas.exceptions import ContractError
from schemas.twin import TwinRecord

__all__ = ["read_compacted", "read_twins"]

logger = logging.getLogger(__name__)


def read_compacted(bootstrap: str, topic: str, kafka_config: Mapping[str, Any] | None = None,
                   timeout_s: float = 30.0) -> dict[bytes, bytes]:
    """Key -> newest value of ``topic`` up to its current end (tombstones remove keys)."""
    c = Consumer({"bootstrap.servers": bootstrap, **(kafka_config or {}),
                  "group.id": f"millstream-reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    latest: dict[bytes, bytes] = {}
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return latest
        ends: dict[int, int] = {}
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return latest
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            p = msg.partition() or 0
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("reading %s[%d]: %s", topic, p, err)
                else:
                    ends.pop(p, None)
                continue
            key, value = msg.key(), msg.value()
            if key is not None:
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
            if (msg.offset() or 0) >= ends.get(p, 0) - 1:
                ends.pop(p, None)
        if ends:
            logger.warning("reading %s: partitions %s not read to their end within %.0f s",
                           topic, sorted(ends), timeout_s)
    finally:
        c.close()
    return latest


def read_twins(bootstrap: str, topic: str,
               kafka_config: Mapping[str, Any] | None = None) -> list[TwinRecord]:
    """Every machine's newest twin record; a record that does not decode is logged and
    skipped (it stays on the topic)."""
    out = []
    for key, value in read_compacted(bootstrap, topic, kafka_config).items():
        try:
            out.append(TwinRecord.decode(value))
        except ContractError as exc:
            logger.warning("twin record of %r on %s does not decode (%s); not seeded",
                           key, topic, exc)
    return out
