"""State that moves with its partition: snapshot/restore/drop of the FrameProcessor per
partition, of the WindowDetector and of the RuleEngine, through the checkpoint codec."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import river

from schemas.catalog import Catalog
from schemas.events import Aggregate
from schemas.readings import FrameBuilder
from streams.detect import WindowDetector
from streams.exceptions import StateVersionError
from streams.processor import FrameProcessor, Output
from streams.rules import RuleEngine
from streams.state import decode_state, encode_state

CNC = "acme/plant1/machining/line1/cnc-01"
PRESS = "acme/plant1/forming/line2/press-01"
T0 = 1_763_760_000_000
NOW = T0 + 60_000


def _frames(source: str, tags: list[str], seconds: int, seed: int) -> list[bytes]:
    """One frame per 100 ms, every tag once in it, values with noise and a drift."""
    rng = random.Random(seed)
    fb = FrameBuilder(source, epoch=1)
    out = []
    for step in range(seconds * 10):
        for i, tag in enumerate(tags):
            fb.add(tag, T0 + step * 100, 50.0 + i + rng.gauss(0, 1) + step * 0.01)
        frame = fb.flush()
        assert frame is not None
        out.append(frame.encode())
    return out


def _rows(out: Output) -> list[tuple[Any, ...]]:
    return [(a.window_ms, a.tag, a.window_start, a.count, a.mean, a.std, a.last)
            for f in out.aggregate_frames for a in f.aggregates()] + [
        ("anomaly", a.anomaly_id, a.detector, a.score) for a in out.anomalies]


def test_a_partition_moves_to_another_processor_and_continues_identically(
        catalog: Catalog) -> None:
    """Partition 0 (OPC-UA source) is checkpointed mid-run and restored in a fresh
    processor that never saw it; partition 1 (Modbus source) stays behind. Both go on as
    if nothing happened, and the moved state came through the binary codec."""
    p0 = _frames("opcua-sim", [f"{CNC}/spindle_temp", f"{CNC}/spindle_speed"], 30, 1)
    p1 = _frames("modbus-sim", [f"{PRESS}/oil_temp"], 30, 2)
    whole = FrameProcessor(catalog)
    moved, stayed = FrameProcessor(catalog), FrameProcessor(catalog)
    cut = 173  # mid-window
    ref: dict[int, list[Any]] = {0: [], 1: []}
    got: dict[int, list[Any]] = {0: [], 1: []}
    for i in range(len(p0)):
        ref[0] += _rows(whole.process(None, p0[i], "r", 0, i, NOW))
        ref[1] += _rows(whole.process(None, p1[i], "r", 1, i, NOW))
        if i < cut:
            got[0] += _rows(stayed.process(None, p0[i], "r", 0, i, NOW))
        else:
            if i == cut:
                blob = encode_state(stayed.snapshot(0, arrays=True))
                stayed.drop(0)
                moved.restore(decode_state(blob), 0)
                assert moved.windows.keys() == [("opcua-sim", 0)]
                assert stayed.windows.keys() == [("modbus-sim", 1)]
            got[0] += _rows(moved.process(None, p0[i], "r", 0, i, NOW))
        got[1] += _rows(stayed.process(None, p1[i], "r", 1, i, NOW))
    ref[0] += _rows(whole.flush(NOW, 0))
    ref[1] += _rows(whole.flush(NOW, 1))
    got[0] += _rows(moved.flush(NOW))
    got[1] += _rows(stayed.flush(NOW))
    assert len(ref[0]) > 60 and len(ref[1]) > 30
    assert sorted(got[0]) == sorted(ref[0])
    assert sorted(got[1]) == sorted(ref[1])
    # the detectors moved with the partition (the rows above include the anomalies, none
    # in this calm workload: tests/unit/test_alarms_state.py has a fault)
    assert moved.alarming.detection.windows > 0
    assert set(moved.alarming.detection.snapshot()["sources"]) == {"opcua-sim"}


def test_a_replayed_frame_after_restore_is_not_counted_twice(catalog: Catalog) -> None:
    frames = _frames("opcua-sim", [f"{CNC}/spindle_temp"], 3, 3)
    a = FrameProcessor(catalog)
    for i, f in enumerate(frames[:15]):
        a.process(None, f, "r", 0, i, NOW)
    b = FrameProcessor(catalog)
    b.restore(json.loads(json.dumps(a.snapshot(0), allow_nan=False)), 0)  # strict JSON too
    assert not b.process(None, frames[14], "r", 0, 14, NOW)
    assert b.counters()["duplicates"] == 1


def test_restore_refuses_another_window_configuration(catalog: Catalog) -> None:
    proc = FrameProcessor(catalog)
    proc.process(None, _frames("opcua-sim", [f"{CNC}/spindle_temp"], 1, 1)[0], "r", 0, 0, NOW)
    snap = proc.snapshot(0)
    snap["config"][1] += 500  # saved with another lateness
    with pytest.raises(StateVersionError, match="lateness"):
        FrameProcessor(catalog).restore(snap, 0)
    snap = proc.snapshot(0)
    snap["version"] = 99
    with pytest.raises(StateVersionError, match="layout 99"):
        FrameProcessor(catalog).restore(snap, 0)


def _agg(i: int, mean: float, tag: str = f"{CNC}/spindle_temp",
         mx: float | None = None) -> Aggregate:
    return Aggregate(tag=tag, window_start=T0 + i * 1000, window_end=T0 + (i + 1) * 1000,
                     count=10, min=mean - 1, max=mean + 1 if mx is None else mx, mean=mean,
                     std=0.5, first=mean, last=mean)


def test_detector_state_round_trips_and_is_not_warming_up_again() -> None:
    rng = random.Random(5)
    means = [70 + rng.gauss(0, 0.5) for _ in range(40)] + [90.0, 70.2, 95.0]
    a = WindowDetector(threshold=6, warmup_windows=10)
    for i in range(20):
        a.observe(_agg(i, means[i]), 0)
    b = WindowDetector(threshold=6, warmup_windows=10)
    b.restore(json.loads(json.dumps(a.snapshot())))
    fresh = WindowDetector(threshold=6, warmup_windows=10)
    for i in range(20, len(means)):
        ours = [(x.feature, x.score, x.anomaly_id) for x in a.observe(_agg(i, means[i]), 0)]
        assert [(x.feature, x.score, x.anomaly_id)
                for x in b.observe(_agg(i, means[i]), 0)] == ours
        fresh.observe(_agg(i, means[i]), 0)
    assert a.flagged == b.flagged >= 2  # the restored one scores at once: no warm-up
    assert b.scored == len(means) - 20 and fresh.scored == len(means) - 20 - 10


def test_detector_refuses_state_of_another_river_release() -> None:
    d = WindowDetector()
    d.observe(_agg(0, 70.0), 0)
    doc = d.snapshot()
    major, minor = river.__version__.split(".")[:2]
    doc["river"] = f"{major}.{int(minor) + 1}.0"
    with pytest.raises(StateVersionError, match=f"River {doc['river']}"):
        WindowDetector().restore(doc)
    doc["river"], doc["version"] = river.__version__, 0
    with pytest.raises(StateVersionError, match="layout 0"):
        WindowDetector().restore(doc)


def test_detector_drop_and_partial_restore_keep_other_tags() -> None:
    d = WindowDetector(warmup_windows=0)
    other = f"{PRESS}/oil_temp"
    for i in range(5):
        d.observe(_agg(i, 70.0 + i % 2), 0)
        d.observe(_agg(i, 40.0 + i % 2, other), 0)
    part = d.snapshot([other])
    assert list(part["tags"]) == [other]
    d.drop([other])
    assert list(d.snapshot()["tags"]) == [f"{CNC}/spindle_temp"]
    d.restore(part, replace=False)
    assert set(d.snapshot()["tags"]) == {f"{CNC}/spindle_temp", other}


def test_rule_state_round_trips_cooldown_and_runs(catalog: Catalog) -> None:
    a = RuleEngine(catalog)
    tag = f"{CNC}/spindle_temp"
    hot = _agg(0, 80.0, tag, mx=99.0)
    [cmd] = a.evaluate(hot, [], now_ms=1_000)
    b = RuleEngine(catalog)
    b.restore(json.loads(json.dumps(a.snapshot([tag]))))
    again = _agg(1, 80.0, tag, mx=99.0)
    assert b.evaluate(again, [], now_ms=2_000) == []  # still cooling down
    assert b.suppressed == 1
    assert RuleEngine(catalog).evaluate(again, [], now_ms=2_000)  # a fresh one would fire
    # the same window always names the same command: a replay is answered, not re-run
    assert RuleEngine(catalog).evaluate(hot, [], now_ms=9_999)[0].command_id == cmd.command_id
    b.drop([tag])
    assert b.snapshot([tag])["spindle-overheat"] == [None, 0, None]


def test_a_restored_or_resumed_partition_is_not_idle_at_once(catalog: Catalog) -> None:
    """The time a partition spent between workers (or paused by a rebalance) is not
    silence of its sources: their windows do not close by the idle timeout before the
    frames sent meanwhile are read."""
    frames = _frames("opcua-sim", [f"{CNC}/spindle_temp"], 2, 4)
    a = FrameProcessor(catalog)
    for i, f in enumerate(frames[:5]):
        a.process(None, f, "r", 0, i, now_ms=NOW)
    assert a.windows.open_windows
    idle = a.windows.idle_ms
    later = NOW + 60_000  # a minute between the checkpoint and the restore
    b = FrameProcessor(catalog)
    b.restore(a.snapshot(0), 0, now_ms=later)
    assert not b.tick(later + idle - 1).aggregate_frames
    assert b.tick(later + idle + 1_000).aggregate_frames  # silent for real: closes
    a.windows.touch(0, later)
    assert not a.tick(later + idle - 1).aggregate_frames
