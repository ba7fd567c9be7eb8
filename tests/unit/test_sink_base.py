"""BatchingSink: batching by size, offsets advance only past written rows, retry state."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Message

from schemas.exceptions import ContractError
from sinks.base import Batch, BatchingSink, BatchPolicy, Decoded, Reject, Rows


class MemorySink(BatchingSink):
    """Rows go to a list; ``fail`` makes writes raise. Messages: b"table:n" or b"bad"."""

    def __init__(self, policy: BatchPolicy) -> None:
        super().__init__({"bootstrap.servers": "127.0.0.1:9", "group.id": "unit", "log_level": "0"},
                         ["t"],
                         {"a": ("x",), "b": ("x",)}, policy)
        self.written: list[tuple[str, list[Any]]] = []
        self.rejected: list[Reject] = []
        self.fail = False

    def decode(self, msg: Message) -> Decoded:
        value = msg.value() or b""
        if value == b"bad":
            raise ContractError("not-json", "bad")
        table, n = value.decode().split(":")
        return Decoded(Rows(table, [list(range(int(n)))]))

    def write(self, batch: Batch) -> None:
        if self.fail:
            raise OSError("disk on fire")
        self.written.append((batch.table, list(batch.data[0])))

    def on_reject(self, msg: Message, reject: Reject) -> None:
        self.rejected.append(reject)


def msg(offset: int, value: bytes, partition: int = 0) -> Message:
    return Message(topic="t", partition=partition, offset=offset, value=value)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink(BatchPolicy(batch_rows=10, flush_ms=60_000, retry_initial_s=0.0))


def test_offsets_advance_only_past_written_rows(sink: MemorySink) -> None:
    sink._accept(msg(0, b"a:4"))
    sink._accept(msg(1, b"b:3"))
    sink._accept(msg(2, b"a:7"))  # table a reaches 11 >= 10: due
    sink._flush_due(force=False)
    assert sink.written == [("a", list(range(4)) + list(range(7)))]
    sink._advance()
    assert sink._commit_to == {("t", 0): 1}  # offset 1 (table b) is not written yet
    sink._flush_due(force=True)
    sink._advance()
    assert sink._commit_to == {("t", 0): 3}
    assert sink.counts["inserted"] == {"a": 11, "b": 3}


def test_bad_message_is_rejected_and_does_not_block_offsets(sink: MemorySink) -> None:
    sink._accept(msg(0, b"bad"))
    sink._advance()
    assert [r.reason for r in sink.rejected] == ["not-json"]
    assert sink._commit_to == {("t", 0): 1}


def test_failed_insert_keeps_rows_and_offsets_until_retry_succeeds(sink: MemorySink) -> None:
    sink.fail = True
    sink._accept(msg(5, b"a:12", partition=2))  # full batch: written at once, and fails
    assert sink.counts["insert_errors"] == 1 and sink.pending_rows() == 12
    assert sink._flush_due(force=False) is False  # the retry fails too
    assert sink.counts["insert_errors"] == 2 and sink._paused
    sink._advance()
    assert sink._commit_to == {}
    sink.fail = False
    assert sink._flush_due(force=True) is True and not sink._paused
    sink._advance()
    assert sink._commit_to == {("t", 2): 6}
    assert sink.written == [("a", list(range(12)))]


def test_a_failing_batch_is_retried_with_exactly_its_rows(sink: MemorySink) -> None:
    sink.fail = True
    sink._accept(msg(0, b"a:12"))  # sealed and failing
    sink._accept(msg(1, b"a:3"))  # joins the next batch, not the failing one
    sealed = sink._sealed["a"][0]
    token = sealed.token
    assert sealed.rows == 12 and sink._open["a"].rows == 3
    sink.fail = False
    assert sink._flush_due(force=True)
    assert sink.written == [("a", list(range(12))), ("a", list(range(3)))]
    assert sealed.token == token


def test_backpressure_pauses_over_the_bound_and_resumes_below_half() -> None:
    s = MemorySink(BatchPolicy(batch_rows=1000, flush_ms=60_000, max_pending_rows=20))
    s._accept(msg(0, b"a:15"))
    s._flush_due(force=False)
    assert not s._paused
    s._accept(msg(1, b"b:10"))  # 25 rows wait: over the bound
    s._flush_due(force=False)
    assert s._paused and s.counts["paused"] == 1
    s._flush_due(force=True)  # written: nothing waits
    assert not s._paused and s.pending_rows() == 0


def test_a_poll_batch_is_taken_only_up_to_the_bound() -> None:
    s = MemorySink(BatchPolicy(batch_rows=1000, flush_ms=60_000, max_pending_rows=20))
    # 8, 16, 24 rows: the third message is taken at 16 <= 20, the fourth not at 24 > 20
    assert s._take([msg(i, b"a:8") for i in range(5)]) == 3
    assert s.pending_rows() == 24 <= 20 + 8  # the bound plus one message
    assert s.counts["consumed"] == 3
    s._flush_due(force=True)  # written: room again
    assert s._take([msg(i, b"b:8") for i in range(3, 5)]) == 2


def test_nothing_more_is_taken_once_an_insert_fails(sink: MemorySink) -> None:
    sink.fail = True
    # the first message fills a batch, which is written (inline) and fails
    assert sink._take([msg(0, b"a:12"), msg(1, b"a:1"), msg(2, b"b:1")]) == 1
    assert sink.pending_rows() == 12 and sink.counts["insert_errors"] == 1


def test_messages_that_cannot_be_given_back_are_taken_rather_than_lost() -> None:
    s = MemorySink(BatchPolicy(batch_rows=1000, flush_ms=60_000, max_pending_rows=5))
    msgs = [msg(0, b"a:8"), msg(1, b"a:8"), msg(2, b"b:1", partition=1)]
    assert s._take(msgs) == 1
    s._give_back(msgs[1:])  # not assigned: the rewind fails, so they are accepted now
    assert s._paused and s.pending_rows() == 17
    s._flush_due(force=True)
    s._advance()
    assert s._commit_to == {("t", 0): 2, ("t", 1): 3}


def test_origin_of_a_row_names_its_message() -> None:
    s = MemorySink(BatchPolicy(batch_rows=1000, flush_ms=60_000))
    for off, n in ((7, 3), (8, 4), (9, 2)):
        s._accept(msg(off, f"a:{n}".encode()))
    batch = s._open["a"]
    offsets = [getattr(batch.origin_of(r), "offset", None) for r in range(9)]
    assert offsets == [7, 7, 7, 8, 8, 8, 8, 9, 9]
