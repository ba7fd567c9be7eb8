"""State that survives: stream workers (processes) on the real Kafka, killed with SIGKILL
mid-window, restarted, joined by a second worker, under both guarantees.

Each test produces the same kind of workload (tests/support/streams_state.py): 4 sources on
3 partitions, 60 s of event time paced over a few seconds, with spikes for the detector.
Every window with data must come out, with the values of a recomputation from the produced
readings; duplicates (at-least-once after a crash) must be identical copies. The detector's
anomalies must be those of one uninterrupted FrameProcessor over the same frames: a
detector that started its warm-up again after the restart would miss the spikes right
after it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from millstream.query import endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.events import Aggregate, now_ms
from schemas.topics import Topics
from streams.processor import FrameProcessor
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for
from tests.support.streams_state import (
    Feeder,
    Key,
    TopicReader,
    Worker,
    Workload,
    aggregates_of,
    anomalies_of,
    check_window,
    workload,
)

pytestmark = pytest.mark.integration

PACE_S = 0.03  # per 200 ms step of event time: 60 s of data in ~9 s


@pytest.fixture
def app_id() -> Iterator[str]:
    name = f"state-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(Path(tempfile.gettempdir()) / f"faust-{name}", ignore_errors=True)


@pytest.fixture
def wl(catalog: Catalog) -> Workload:
    return workload(catalog)


@pytest.fixture
def feed(kafka_bootstrap: str, topics: Topics) -> Iterator[Feeder]:
    feeder = Feeder(kafka_bootstrap, topics.readings)
    yield feeder
    del feeder.producer  # before the session's broker goes


def _reference_anomalies(catalog: Catalog, wl: Workload) -> dict[tuple[str, int, str], int]:
    """The anomalies of one uninterrupted processor over the same frames."""
    proc = FrameProcessor(catalog)
    found: dict[tuple[str, int, str], int] = {}
    for i, (partition, key, value) in enumerate(wl.messages()):
        for a in proc.process(key, value, "readings", partition, i, now_ms()).anomalies:
            if a.window_end <= wl.end_ms:
                found[(a.tag, a.window_start, a.feature)] = 1
    return found


def _produce_steps(feed: Feeder, wl: Workload, lo: int, hi: int) -> None:
    for step in wl.steps[lo:hi]:
        feed.send(step)
        time.sleep(PACE_S)


def _all_windows(wl: Workload) -> Any:
    return lambda values: set(wl.expected) <= set(aggregates_of(values))


def _check_aggregates(wl: Workload, values: list[bytes], *, exactly_once: bool) -> int:
    """Every window once after collapse, equal to the recomputation; the copies a
    replay made are identical. Returns how many extra copies there were."""
    got = aggregates_of(values)
    missing = sorted(set(wl.expected) - set(got))
    assert not missing, (len(missing), missing[:5])
    extra = 0
    for key, pairs in wl.expected.items():
        copies = got[key]
        check_window(key, copies[0], pairs)
        assert all(c == copies[0] for c in copies), (key, copies)
        extra += len(copies) - 1
    if exactly_once:
        assert extra == 0, f"{extra} windows published more than once"
    return extra


def _run_with_a_crash(kafka_bootstrap: str, topics: Topics, feed: Feeder, wl: Workload,
                      app_id: str, folder: Path, guarantee: str) -> dict[str, Any]:
    """A worker is SIGKILLed half-way through the data (mid-window, results and state in
    flight), a new one takes over; returns what the readers saw."""
    first = Worker("w1", folder, kafka_bootstrap, topics.prefix, app_id, guarantee=guarantee,
                   interval=3.0)
    first.wait(lambda s: s.get("partitions") == [0, 1, 2], 60, "assignment")
    half = len(wl.steps) // 2
    _produce_steps(feed, wl, 0, half)
    first.wait(lambda s: s.get("checkpoints", 0) >= 3, 30, "checkpoints")
    step = half
    while not first.unsaved():  # frames processed since the last checkpoint, everywhere
        _produce_steps(feed, wl, step, step + 1)
        step += 1
        assert step < len(wl.steps) - 20, first.status()
    before = first.status()
    first.kill()  # mid-window, with state and results the checkpoint does not have yet
    feed.send([m for s in wl.steps[step:] for m in s] + wl.closers)
    second = Worker("w2", folder, kafka_bootstrap, topics.prefix, app_id, guarantee=guarantee)
    try:
        aggs = TopicReader(kafka_bootstrap, topics.aggregates)
        aggs.poll_until(_all_windows(wl), 90)
        anomalies = TopicReader(kafka_bootstrap, topics.anomalies).drain()
        after = second.status()
        assert after.get("restored") == 3, (after, second.tail())
        return {"aggregates": aggs.drain(), "anomalies": anomalies, "before": before,
                "after": after}
    finally:
        assert second.stop() == 0, second.tail()


def test_sigkill_mid_window_then_restart_at_least_once(
        kafka_bootstrap: str, topics: Topics, catalog: Catalog, wl: Workload, app_id: str,
        feed: Feeder, tmp_path: Path) -> None:
    got = _run_with_a_crash(kafka_bootstrap, topics, feed, wl, app_id, tmp_path,
                            "at_least_once")
    assert 0 < got["before"]["frames"] < len(wl.messages()), got["before"]
    extra = _check_aggregates(wl, got["aggregates"], exactly_once=False)
    assert extra > 0, "the crash left nothing to replay: the test did not test a crash"
    # the detector went on where it was: the same anomalies as an uninterrupted run
    seen = anomalies_of(got["anomalies"], wl.end_ms)
    reference = _reference_anomalies(catalog, wl)
    assert len(reference) >= 20
    assert set(seen) == set(reference), (sorted(set(reference) - set(seen))[:5],
                                         sorted(set(seen) - set(reference))[:5], extra)


def test_exactly_once_read_committed_sees_each_result_once_across_a_sigkill(
        kafka_bootstrap: str, topics: Topics, catalog: Catalog, wl: Workload, app_id: str,
        feed: Feeder, tmp_path: Path) -> None:
    got = _run_with_a_crash(kafka_bootstrap, topics, feed, wl, app_id, tmp_path,
                            "exactly_once")
    _check_aggregates(wl, got["aggregates"], exactly_once=True)
    seen = anomalies_of(got["anomalies"], wl.end_ms)
    assert set(seen) == set(_reference_anomalies(catalog, wl))
    assert set(seen.values()) == {1}, "an anomaly was published twice"
    # a read_uncommitted reader also sees what the killed worker's open transaction held
    # (aborted): the windows it had closed since its last checkpoint, again
    dirty = aggregates_of(TopicReader(kafka_bootstrap, topics.aggregates,
                                      read_committed=False).drain())
    assert sum(len(c) for c in dirty.values()) > len(wl.expected)


def test_rebalance_moves_partitions_without_losing_or_double_counting(
        kafka_bootstrap: str, topics: Topics, catalog: Catalog, wl: Workload, app_id: str,
        feed: Feeder, tmp_path: Path) -> None:
    """A second worker joins mid-run: partitions move with their checkpoint (written on
    revocation), so even at-least-once publishes each window exactly once."""
    first = Worker("w1", tmp_path, kafka_bootstrap, topics.prefix, app_id)
    second: Worker | None = None
    try:
        first.wait(lambda s: s.get("partitions") == [0, 1, 2], 60, "assignment")
        third = len(wl.steps) // 3
        _produce_steps(feed, wl, 0, third)
        first.wait(lambda s: s.get("checkpoints", 0) >= 3, 30, "checkpoints")
        second = Worker("w2", tmp_path, kafka_bootstrap, topics.prefix, app_id)
        step = third
        while not second.status().get("partitions"):  # the data flows on while it joins
            assert step < len(wl.steps) - 30, ("w2 joined too late", second.tail())
            _produce_steps(feed, wl, step, step + 1)
            time.sleep(0.1)  # event time runs 1.5x wall time: no source looks idle
            step += 1
        _produce_steps(feed, wl, step, len(wl.steps))
        feed.send(wl.closers)
        aggs = TopicReader(kafka_bootstrap, topics.aggregates)
        aggs.poll_until(_all_windows(wl), 90)
        a, b = first.status(), second.status()
        assert sorted(a["partitions"] + b["partitions"]) == [0, 1, 2], (a, b)
        assert b["restored"] >= 1, b  # what moved came from a checkpoint
        assert b["frames"] > 100 and a["frames"] > 100, (a, b)  # both had their share
        assert a["late"] == b["late"] == 0, (a, b)
        _check_aggregates(wl, aggs.drain(), exactly_once=True)
    finally:
        assert first.stop() == 0, first.tail()
        if second is not None:
            assert second.stop() == 0, second.tail()


def test_two_workers_one_killed_aggregates_complete_in_clickhouse(
        kafka_bootstrap: str, topics: Topics, catalog: Catalog, wl: Workload, app_id: str,
        feed: Feeder, tmp_path: Path, chdb_dsn: str) -> None:
    sink = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json",
                      group="state-sink", batch_rows=2_000)
    one = Worker("w1", tmp_path, kafka_bootstrap, topics.prefix, app_id)
    two = Worker("w2", tmp_path, kafka_bootstrap, topics.prefix, app_id)
    try:
        one.wait(lambda s: bool(s.get("partitions")), 60, "assignment")
        two.wait(lambda s: bool(s.get("partitions")), 60, "assignment")
        half = len(wl.steps) // 2
        _produce_steps(feed, wl, 0, half)
        one.wait(lambda s: s.get("checkpoints", 0) >= 2, 30, "checkpoints")
        _produce_steps(feed, wl, half, half + 15)
        one.kill()
        feed.send([m for step in wl.steps[half + 15:] for m in step] + wl.closers)
        two.wait(lambda s: s.get("partitions") == [0, 1, 2], 60, "taking over")
        tags = sorted({k[1] for k in wl.expected})
        where = ("tag IN (" + ", ".join(f"'{t}'" for t in tags) + ") AND "
                 f"toUnixTimestamp64Milli(window_start) < {wl.end_ms}")  # not the closers'
        endpoint = endpoint_file_for(chdb_dsn)

        def rows(sql: str) -> list[list[Any]]:
            return [list(r) for r in run_query(chdb_dsn, sql, endpoint).rows]

        wait_for(lambda: rows(f"SELECT count() FROM aggregates FINAL WHERE {where}")[0][0]
                 >= len(wl.expected), 90, "every window in ClickHouse")
        final = rows("SELECT window_ms, tag, toUnixTimestamp64Milli(window_start), count, "
                     f"min, max, mean, std, first, last FROM aggregates FINAL WHERE {where}")
        keys: list[Key] = [(int(r[0]), str(r[1]), int(r[2])) for r in final]
        assert len(keys) == len(set(keys)) == len(wl.expected)  # each window once
        assert set(keys) == set(wl.expected)
        by_key = {k: r for k, r in zip(keys, final, strict=True)}
        for key, pairs in wl.expected.items():
            r = by_key[key]
            check_window(key, Aggregate(key[1], key[2], key[2] + key[0], int(r[3]), r[4], r[5],
                                        r[6], r[7], r[8], r[9], window_ms=key[0]), pairs)
    finally:
        assert two.stop() == 0, two.tail()
        if one.proc.poll() is None:
            one.stop()
        stop_sink(sink)
