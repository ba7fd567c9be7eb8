"""FrameProcessor: dead letters for bad frames, unknown tags, and the whole chain."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.readings import SCHEMA, FrameBuilder, ReadingFrame
from streams.processor import FrameProcessor

CNC = "acme/plant1/machining/line1/cnc-01"
T0 = 1_763_760_000_000
NOW = T0 + 60_000  # the worker's clock: readings more than 5 min ahead are dead letters


def _frame(rows: list[tuple[str, int, float]], seq: int = 1) -> bytes:
    fb = FrameBuilder("opcua-sim", epoch=1, next_seq=seq)
    for tag, ts, v in rows:
        fb.add(tag, ts, v)
    frame = fb.flush()
    assert frame is not None
    return frame.encode()


@pytest.fixture
def proc(catalog: Catalog) -> FrameProcessor:
    return FrameProcessor(catalog)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{oops", "not-json"),
    (None, "empty-message"),
    (b"[1, 2]", "not-an-object"),
    (json.dumps({"schema": "other.v9"}).encode(), "wrong-schema"),
    (json.dumps({"schema": SCHEMA, "source": "s", "epoch": 1, "seq": 1, "tag": ["x"],
                 "ts": [1], "value": [1.0, 2.0], "quality": [0]}).encode(), "bad-field"),
])
def test_malformed_frames_become_one_dead_letter(
    proc: FrameProcessor, payload: bytes | None, reason: str
) -> None:
    out = proc.process(b"k", payload, "t.readings", 2, 41, now_ms=7)
    assert out.aggregates == [] and len(out.deadletters) == 1
    dl = out.deadletters[0]
    assert (dl.stage, dl.reason, dl.topic, dl.partition, dl.offset, dl.key) == (
        "streams", reason, "t.readings", 2, 41, "k")
    assert dl.payload == (payload or b"").decode()
    assert proc.counters()["deadletters"] == 1 and proc.frames == 0


def test_unknown_tags_dead_lettered_and_known_readings_still_aggregated(
    proc: FrameProcessor,
) -> None:
    temp = f"{CNC}/spindle_temp"
    payload = _frame([(temp, T0, 70.0), ("ghost/a", T0, 1.0), ("ghost/a", T0 + 1, 2.0),
                      (temp, T0 + 500, 72.0), ("ghost/b", T0 + 2, 3.0)])
    out = proc.process(None, payload, "t.readings", 0, 5, now_ms=NOW)
    [dl] = out.deadletters
    assert dl.reason == "unknown-tag" and dl.payload == payload.decode()
    assert "3 of 5 readings" in dl.detail
    assert "ghost/a (2)" in dl.detail and "ghost/b (1)" in dl.detail
    [agg] = proc.flush(NOW).aggregates
    assert (agg.tag, agg.count, agg.mean, agg.first, agg.last) == (temp, 2, 71.0, 70.0, 72.0)
    c = proc.counters()
    # one row per window of every size that holds the readings (a hopping window's
    # readings are in size / hop windows)
    per_size = sum(w.size_ms // w.pane_ms for w in proc.window_specs)
    assert (c["frames"], c["readings"], c["deadletters"], c["aggregates"]) == (1, 5, 1, per_size)


def test_chain_limit_rule_and_counters(proc: FrameProcessor) -> None:
    temp = f"{CNC}/spindle_temp"
    # the limit is decided by one reading: the command comes with the frame, not the window
    out = proc.process(b"opcua-sim", _frame([(temp, T0 + 10, 80.0), (temp, T0 + 20, 91.2)]),
                       "t", 0, 0, now_ms=NOW + 100)
    [cmd] = out.commands
    assert cmd.rule == "spindle-overheat" and cmd.issued_at == NOW + 100
    assert cmd.reason.startswith("spindle_temp 91.2 degC > 85 at ")
    assert out.aggregates == [] and out.anomalies == []
    # the machine's twin gets its first readings
    assert [p.machine for p in out.twin] == [CNC]
    out = proc.process(b"opcua-sim", _frame([(temp, T0 + 2500, 80.0)], seq=3), "t", 0, 1,
                       now_ms=NOW + 200)
    [agg] = out.aggregates
    assert agg.max == 91.2
    assert out.commands == []  # the window path does not fire the same limit again
    c = proc.counters()
    # the 1 s window closed; the longer ones and the next 1 s window are still open
    assert (c["aggregates"], len(out.aggregates), c["commands"]) == (1, 1, 1)
    assert c["fastpath"] == {"fired": 1, "suppressed": 0, "stale": 0}
    assert c["open_windows"] == len({w.pane_ms for w in proc.window_specs})


def test_chain_detects_anomalies_after_warmup(proc: FrameProcessor) -> None:
    tag = f"{CNC}/vibration_rms"
    rng = np.random.default_rng(5)
    found = []
    for i in range(40):
        v = 2.0 if i < 30 else 9.0
        rows = [(tag, T0 + i * 1000 + j * 100, v + float(rng.normal(0.0, 0.05)))
                for j in range(10)]
        found += proc.process(None, _frame(rows, seq=1 + 10 * i), "t", 0, i, NOW).anomalies
    found += proc.flush(NOW).anomalies
    assert found and all(a.tag == tag for a in found)
    assert min(a.window_start for a in found) == T0 + 30_000
    assert proc.counters()["anomalies"] == len(found)


def test_late_and_bad_quality_counted(proc: FrameProcessor) -> None:
    temp = f"{CNC}/spindle_temp"
    proc.process(None, _frame([(temp, T0 + 5000, 1.0)]), "t", 0, 0, NOW)
    fb = FrameBuilder("opcua-sim", epoch=1, next_seq=2)
    fb.add(temp, T0, 1.0)  # window ended 4 s before the watermark
    fb.add(temp, T0 + 5001, None)
    frame = fb.flush()
    assert isinstance(frame, ReadingFrame)
    proc.process(None, frame.encode(), "t", 0, 1, NOW)
    c = proc.counters()
    assert (c["late"], c["bad_quality"], c["readings"]) == (1, 1, 3)


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_never_raises_on_garbage(catalog: Catalog, payload: bytes) -> None:
    out = FrameProcessor(catalog).process(None, payload, "t", 0, 0, 0)
    assert len(out.deadletters) == 1


def test_extreme_values_never_produce_unencodable_outputs(proc: FrameProcessor) -> None:
    # finite readings whose sum or squared deviation overflows float64: the window's
    # statistics would be inf, which JSON cannot carry and which crashed the Faust agent
    temp = f"{CNC}/spindle_temp"
    ok = f"{CNC}/coolant_temp"
    out = proc.process(None, _frame([(temp, T0, 1e200), (temp, T0 + 1, -1e200),
                                     (temp, T0 + 2, 1.7e308), (temp, T0 + 3, 1.7e308),
                                     (ok, T0, 20.0)]), "t", 0, 0, NOW)
    out.aggregates += proc.flush(NOW).aggregates
    for event in [*out.aggregates, *out.anomalies, *out.commands, *out.deadletters]:
        event.encode()
    assert [a.tag for a in out.aggregates] == [ok]
