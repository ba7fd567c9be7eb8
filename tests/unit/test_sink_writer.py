"""BatchWriter's thread: batches written in order, a failing one retried (same rows) before
the next, offsets held back until their rows are written, consumption paused meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

from sinks.base import Batch, BatchPolicy
from sinks.writer import BatchWriter
from tests.unit.test_sink_base import MemorySink, msg

POLICY = BatchPolicy(batch_rows=10, flush_ms=60_000, retry_initial_s=0.01, retry_max_s=0.02)


def counts() -> dict[str, Any]:
    return {"inserted": {"a": 0}, "insert_seconds": {"a": 0.0}, "insert_errors": 0}


def batch(gen: int, rows: int) -> Batch:
    b = Batch("a", ("x",), gen=gen)
    b.add([list(range(rows))])
    return b


def test_thread_writes_in_order_and_retries_the_failing_batch_first() -> None:
    written: list[tuple[int, str, int]] = []
    failures = {0: 3}  # batch 0 fails three times

    def write(b: Batch) -> None:
        if failures.get(b.gen, 0):
            failures[b.gen] -= 1
            raise OSError("disk full")
        written.append((b.gen, b.token, threading.get_ident()))

    c = counts()
    w = BatchWriter(["a"], write, POLICY, c)
    first = batch(0, 4)
    w.start()
    try:
        w.push(first)
        w.push(batch(1, 5))
        assert w.wait_idle(time.monotonic() + 10)
    finally:
        w.stop()
    assert [g for g, _, _ in written] == [0, 1]
    assert written[0][1] == first.token and first.attempts == 3
    assert written[0][2] != threading.get_ident()  # written by the writer thread
    assert w.written_gen("a") == 1
    assert c["inserted"]["a"] == 9 and c["insert_errors"] == 3


def test_written_gen_waits_for_the_write_in_progress() -> None:
    release = threading.Event()

    def write(_b: Batch) -> None:
        release.wait(10)

    w = BatchWriter(["a"], write, POLICY, counts())
    w.start()
    try:
        w.push(batch(0, 2))
        time.sleep(0.05)
        assert w.written_gen("a") == -1 and len(w.batches()) == 1
        release.set()
        assert w.wait_idle(time.monotonic() + 10)
        assert w.written_gen("a") == 0 and w.batches() == []
    finally:
        w.stop()


def test_sink_with_writer_thread_commits_only_written_rows_and_pauses_on_failure() -> None:
    sink = MemorySink(POLICY)
    sink.fail = True
    sink._writer.start()
    try:
        sink._accept(msg(0, b"a:12"))  # full: sealed, the writer fails on it
        deadline = time.monotonic() + 10
        while sink._flush_due(force=False) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink._paused and sink.counts["insert_errors"] >= 1
        sink._advance()
        assert sink._commit_to == {}
        sink._accept(msg(1, b"b:2"))
        sink.fail = False
        sink._flush_due(force=True)
        assert sink._writer.wait_idle(time.monotonic() + 10)
        sink._flush_due(force=False)
        assert not sink._paused
        sink._advance()
        assert sink._commit_to == {("t", 0): 2}
        # order holds within a table; "b" may go in while "a" waits for its retry
        assert sorted(sink.written) == [("a", list(range(12))), ("b", [0, 1])]
    finally:
        sink._writer.stop()
