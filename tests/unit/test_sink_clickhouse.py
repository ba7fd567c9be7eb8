"""Readings frames and events -> ClickHouse columns."""

from __future__ import annotations

import pytest

from schemas.events import Aggregate, CommandResult, DeadLetter
from schemas.exceptions import ContractError
from schemas.readings import FrameBuilder, Quality, ReadingFrame
from sinks.clickhouse import READINGS_COLUMNS, event_columns, frame_columns


def frame() -> ReadingFrame:
    b = FrameBuilder("src", epoch=7, next_seq=100)
    b.add("p/a", 1_000, 1.5)
    b.add("p/x", 1_001, None, Quality.BAD)
    b.add("p/b", 1_002, 3.0, Quality.UNCERTAIN)
    f = b.flush()
    assert f is not None
    return ReadingFrame.decode(f.encode())


def test_known_frame_becomes_columns() -> None:
    cols, unknown = frame_columns(frame(), {"p/a": "degC", "p/b": "", "p/x": "bar"})
    assert unknown == []
    assert len(cols) == len(READINGS_COLUMNS)
    rows = list(zip(*cols, strict=True))
    assert rows == [("p/a", 1000, 1.5, 0, "src", 7, 100, None, "", None, "degC"),
                    ("p/x", 1001, None, 2, "src", 7, 101, None, "", None, "bar"),
                    ("p/b", 1002, 3.0, 1, "src", 7, 102, None, "", None, "")]


def test_unknown_tags_are_left_out_and_keep_their_seq() -> None:
    cols, unknown = frame_columns(frame(), {"p/a": "", "p/b": ""})
    assert unknown == ["p/x"]
    assert cols[0] == ["p/a", "p/b"] and cols[6] == [100, 102]


def test_out_of_range_ts_is_a_contract_error() -> None:
    f = frame()
    bad = ReadingFrame(f.source, f.epoch, f.seq, f.tag, [1, 2, 2**70], f.value, f.quality)
    with pytest.raises(ContractError) as info:
        frame_columns(bad, dict.fromkeys(f.tag, ""))
    assert info.value.reason == "out-of-range"


def test_event_columns_in_field_order() -> None:
    agg = Aggregate("p/a", 0, 1000, 3, 1.0, 2.0, 1.5, 0.5, 1.0, 2.0)
    assert event_columns(agg) == [["p/a"], [0], [1000], [3], [1.0], [2.0], [1.5], [0.5],
                                  [1.0], [2.0], [1000], [None]]
    res = CommandResult("c1", "p/sp", 5.0, None, "failed", "no answer", 12)
    assert event_columns(res)[3] == [None]


def test_event_with_value_too_big_for_its_column_is_rejected() -> None:
    agg = Aggregate("p/a", 0, 1000, -1, 1.0, 2.0, 1.5, 0.5, 1.0, 2.0)
    with pytest.raises(ContractError):
        event_columns(agg)
    dl = DeadLetter.of(stage="s", reason="r", detail="d", topic="t", partition=2**40,
                       offset=0, key=None, value=b"x")
    with pytest.raises(ContractError):
        event_columns(dl)


def test_event_that_could_never_be_inserted_is_rejected() -> None:
    # JSON allows both; clickhouse-connect cannot serialise either, so one such message
    # would make its whole batch fail on every retry and stall the sink for good
    huge = Aggregate("p/a", 0, 1000, 3, 10**400, 2.0, 1.5, 0.5, 1.0, 2.0)
    with pytest.raises(ContractError):
        event_columns(huge)
    surrogate = CommandResult.decode(b'{"schema":"millstream.command-results.v1",'
                                     b'"command_id":"c\\ud800","setpoint":"p/sp",'
                                     b'"requested":5,"readback":null,"status":"failed",'
                                     b'"detail":"x","executed_at":12}')
    with pytest.raises(ContractError):
        event_columns(surrogate)


def test_frame_whose_source_cannot_be_encoded_is_rejected() -> None:
    f = frame()
    bad = ReadingFrame.decode(f.encode().replace(b'"src"', b'"s\\udc80"'))
    with pytest.raises(ContractError):
        frame_columns(bad, dict.fromkeys(f.tag, ""))


def test_a_dead_letter_that_was_not_delivered_holds_back_the_commit() -> None:
    """A failed delivery must not leave the producer's queue empty: the base would then
    commit the rejected message's offset, and the message would be lost."""
    import threading

    from confluent_kafka import Message, Producer

    from schemas.topics import Topics
    from sinks.base import Reject
    from sinks.clickhouse import ClickHouseSink

    sink = ClickHouseSink.__new__(ClickHouseSink)  # no chDB, no consumer: the dead-letter path
    sink.topics = Topics("unit")
    sink.counts = {"deadlettered": 0, "deadletter_malformed": 0, "deadletter_errors": 0}
    sink._shared = threading.Lock()
    sink._producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": "100",
                               "log_level": 0})  # the refusals are expected
    sink.on_reject(Message(topic="unit.readings", partition=0, offset=3, value=b"x"),
                   Reject("not-json", "x"))
    assert sink.ready_to_commit() is False
    assert sink.counts["deadletter_errors"] >= 1
    sink._producer.purge()
