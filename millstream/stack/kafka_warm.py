"""A fresh broker creates its internal topics on first use: ``__consumer_offsets`` when the
first consumer group looks up its coordinator, ``__transaction_state`` when the first
transactional producer starts. On a busy two-core machine that takes seconds to tens of
seconds, and the first worker to start (in a demo, a benchmark or a test) pays for it in
its first rebalance or checkpoint transaction. :func:`warm_up` creates both right after the
embedded broker starts, so the stack is ready when it says so."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

logger = logging.getLogger(__name__)


def warm_up(bootstrap: str, conf: dict[str, str] | None = None, timeout: float = 60.0) -> float:
    """Make the broker create its group and transaction coordinators' topics; returns the
    seconds it took. A broker that is slower than ``timeout`` is logged, not refused: the
    clients wait for it themselves."""
    started = time.monotonic()
    # log_level 3: not the "coordinator load in progress: retrying" notices of a new broker
    base = {"bootstrap.servers": bootstrap, "log_level": "3", **(conf or {})}
    producer = Producer({**base, "transactional.id": f"millstream-warm-up-{uuid.uuid4().hex}"})
    consumer = Consumer({**base, "group.id": "millstream-warm-up",
                         "enable.auto.commit": False})
    try:
        producer.init_transactions(timeout)
        left = max(1.0, timeout - (time.monotonic() - started))
        consumer.committed([TopicPartition("millstream-warm-up", 0)], timeout=left)
    except KafkaException as exc:
        logger.warning("Kafka at %s had not created its internal topics after %.0f s (%s); "
                       "the first consumer group or transaction will wait for them",
                       bootstrap, time.monotonic() - started, exc.args[0])
    finally:
        consumer.close()
        producer.flush(1)
    took = time.monotonic() - started
    logger.info("Kafka at %s: group and transaction coordinators ready in %.1f s", bootstrap,
                took)
    return took
