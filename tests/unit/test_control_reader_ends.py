"""The executor's start-up read of its control topic waits out a partition without a leader."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sinks.control_reader import _ends


class Marks:
    """Answers get_watermark_offsets with ``errors`` first (one per call), then (0, 5)."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float,
                              cached: bool) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 5


PARTS = [TopicPartition("t.control", 0)]


def test_a_leader_being_elected_is_asked_again() -> None:
    marks = Marks(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert _ends(marks, PARTS) == {0: 5}  # type: ignore[arg-type]
    assert marks.calls == 3


def test_other_errors_and_a_leader_that_never_comes_are_raised() -> None:
    with pytest.raises(KafkaException, match="Authentication"):
        _ends(Marks(KafkaError._AUTHENTICATION), PARTS)  # type: ignore[arg-type]
    forever = Marks(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException):
        _ends(forever, PARTS, timeout_s=0.5)  # type: ignore[arg-type]
    assert 2 <= forever.calls < 20
