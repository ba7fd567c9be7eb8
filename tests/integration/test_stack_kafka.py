"""The embedded broker is ready when it says so: its internal topics exist before the first
consumer group or transactional producer needs them."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from millstream.stack.kafka_warm import warm_up

pytestmark = pytest.mark.integration


def test_the_session_broker_has_its_internal_topics(kafka_bootstrap: str) -> None:
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert "__consumer_offsets" in topics
    assert "__transaction_state" in topics
    assert len(topics["__transaction_state"].partitions) == 4  # not the default 50
    assert warm_up(kafka_bootstrap, timeout=10) < 5  # a warm broker answers at once
