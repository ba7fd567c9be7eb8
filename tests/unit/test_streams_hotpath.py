"""The worker's fast paths give what the straightforward paths give.

Each shortcut taken for speed (frames folded in batches, a frame parsed by msgspec, the
detector's statistics in arrays, asset records scattered at once, a sequence run that
continues the last) is checked here against the plain path it replaces, on random input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog, WindowSpec
from schemas.events import Aggregate, Anomaly
from schemas.exceptions import ContractError
from schemas.readings import SCHEMA, ReadingFrame
from streams.assets import FEATURES, AssetIndex, AssetWindow
from streams.decode import _fast, decode_frame
from streams.dedup import SeqDedup
from streams.detect import DETECTOR_NAME, GuardedSAD, WindowDetector
from streams.windows import Closed, WindowStore

T0 = 1_763_760_000_000
SPECS = [WindowSpec(size_ms=1000), WindowSpec(size_ms=4000, hop_ms=2000),
         WindowSpec(size_ms=6000)]


# -- windows: folded in batches == folded frame by frame ---------------------------------

frame_st = st.lists(st.tuples(st.integers(0, 5), st.integers(-1500, 400),
                              st.floats(-1e3, 1e3), st.sampled_from([0, 0, 1, 2])),
                    min_size=1, max_size=12)


def _closed_rows(closed: list[Closed]) -> dict[tuple[int, str, int], tuple[Any, ...]]:
    out = {}
    for c in closed:
        s = c.stats
        for i, tag in enumerate(c.tag):
            out[(c.window_ms, tag, int(c.window_start[i]))] = (
                int(s.n[i]), int(s.total[i]), int(s.good[i]), float(s.min[i]),
                float(s.max[i]), float(s.first[i]), float(s.last[i]), float(s.mean[i]),
                float(s.m2[i]))
    return out


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(frame_st, min_size=1, max_size=25))
def test_batched_windows_equal_frame_by_frame(frames: list[list[Any]]) -> None:
    batched, eager = WindowStore(SPECS, 1200), WindowStore(SPECS, 1200, max_pending=0)
    got: dict[str, list[Closed]] = {"b": [], "e": []}
    lates: dict[str, list[Any]] = {"b": [], "e": []}
    t, seq = T0, 1
    for rows in frames:
        t += 350  # event time moves on; a reading may lag it by up to 1.5 s
        tags = [f"tag{r[0]}" for r in rows]
        ts = np.asarray([t + r[1] for r in rows], np.int64)
        value = np.asarray([r[2] for r in rows], np.float64)
        quality = np.asarray([r[3] for r in rows], np.int8)
        seqs = np.arange(seq, seq + len(rows), dtype=np.int64)
        seq += len(rows)
        for name, w in (("b", batched), ("e", eager)):
            res = w.add(("s", 0), tags, ts, value, quality, seqs, 0)
            got[name] += res.closed
            lates[name].append((None if res.late is None else res.late.tolist(),
                                res.missed_ms, res.aggregated))
    assert lates["b"] == lates["e"]
    assert batched.open_windows == eager.open_windows
    got["b"] += batched.flush_all()
    got["e"] += eager.flush_all()
    b, e = _closed_rows(got["b"]), _closed_rows(got["e"])
    assert b.keys() == e.keys()
    for key in b:
        assert b[key][:7] == e[key][:7], key  # counts, min, max, first, last: exact
        assert b[key][7] == pytest.approx(e[key][7], rel=1e-9, abs=1e-9)
        assert b[key][8] == pytest.approx(e[key][8], rel=1e-7, abs=1e-6)


def test_idle_close_waits_for_a_partition_that_is_behind() -> None:
    w = WindowStore([WindowSpec(size_ms=1000)], 1000, idle_ms=2000)
    one = (np.asarray([T0 + 100], np.int64), np.asarray([1.0]), np.zeros(1, np.int8),
           np.asarray([1], np.int64))
    w.add(("s", 0), ["a"], *one, now_ms=10_000)
    w.add(("s", 1), ["a"], *one, now_ms=10_000)
    closed = w.close_idle(20_000, behind={1})  # partition 1 has messages not handled yet
    assert [(c.source, c.partition) for c in closed] == [("s", 0)]
    assert [(c.source, c.partition) for c in w.close_idle(20_000)] == [("s", 1)]


# -- decode: msgspec's typed parse == the strict decoder ---------------------------------

def _payload(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _valid(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"schema": SCHEMA, "source": "opcua-sim", "epoch": 7, "seq": 11,
            "tag": [f"a/b/t{i % 4}" for i in range(n)],
            "ts": [T0 + int(x) for x in rng.integers(0, 5000, n)],
            "value": [None if i % 7 == 3 else round(float(x), 3)
                      for i, x in enumerate(rng.normal(0, 100, n))],
            "quality": [int(q) for q in rng.integers(0, 3, n)]}


BROKEN = [
    ("value", 2, float("nan")), ("value", 1, "7.5"), ("value", 0, True), ("ts", 1, 1.5),
    ("ts", 0, 2**70), ("quality", 0, 3), ("quality", 1, 1.0), ("tag", 0, ""),
    ("tag", 1, 5), ("seq", None, 0), ("schema", None, "other.v1"), ("source", None, ""),
    ("server_ts", None, [1]), ("status", None, ["x", None, 3]), ("value", None, [1.0]),
    ("value", 0, 1e308 * 10), ("epoch", None, "1"),
]


@pytest.mark.parametrize(("field", "pos", "bad"), BROKEN)
def test_fast_decode_refuses_what_the_strict_decoder_refuses(field: str, pos: int | None,
                                                             bad: Any) -> None:
    doc = _valid(5, 1)
    if pos is None:
        doc[field] = bad
    else:
        doc[field][pos] = bad
    payload = json.dumps(doc).encode()  # json writes NaN and inf as NaN, Infinity
    assert _fast(payload) is None
    try:  # and the whole decoder still names the fault, or rescues the good readings
        frame = decode_frame(payload)
    except ContractError:
        return
    assert len(frame.tag) + sum(len(p) for p in frame.rejected.values()) == 5


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 1000), extras=st.booleans())
def test_fast_decode_equals_the_strict_decoder(n: int, seed: int, extras: bool) -> None:
    doc = _valid(n, seed)
    if extras:
        doc["server_ts"] = [T0] * n
        doc["status"] = [None] * (n - 1) + ["BadSensorFailure"]
        doc["unknown_key"] = {"ignored": True}
    payload = _payload(doc)
    fast = _fast(payload)
    assert fast is not None
    strict = ReadingFrame.decode(payload)
    a = strict.arrays()
    assert (fast.source, fast.epoch, fast.first_seq, fast.size, fast.tag) == (
        strict.source, strict.epoch, strict.seq, len(strict), a.tag)
    for name in ("ts", "quality", "seq"):
        assert getattr(fast, name).tolist() == getattr(a, name).tolist()
        assert getattr(fast, name).dtype == getattr(a, name).dtype
    assert np.array_equal(fast.value, a.value, equal_nan=True)


# -- dedup: a continuing run == the general path -----------------------------------------

def test_fresh_run_equals_fresh_on_runs_gaps_and_repeats() -> None:
    runs = [(1, 10), (11, 5), (11, 5), (30, 4), (16, 14), (5, 40), (46, 1), (100, 3)]
    fast, slow = SeqDedup(tolerance=20), SeqDedup(tolerance=20)
    for first, n in runs:
        a, why_a = fast.fresh_run("s", 1, first, n)
        b, why_b = slow.fresh("s", 1, np.arange(first, first + n, dtype=np.int64))
        assert a.tolist() == b.tolist() and why_a == why_b
    assert fast.snapshot() == slow.snapshot() and fast.duplicates == slow.duplicates


# -- detector: arrays per tag == one river model per (tag, feature) ----------------------

class _PerTag:
    """The detector as it was: GuardedSAD objects per tag and feature, one call each."""

    def __init__(self, threshold: float, warmup: int, rebaseline: int) -> None:
        self.threshold, self.warmup, self.rebaseline = threshold, warmup, rebaseline
        self.state: dict[str, list[Any]] = {}

    def observe(self, agg: Aggregate) -> list[tuple[str, int, str, float]]:
        st_ = self.state.setdefault(agg.tag, [0, 0, {"mean": GuardedSAD(),
                                                     "std": GuardedSAD()}])
        st_[0] += 1
        found = []
        x = {"mean": agg.mean, "std": agg.std}
        if st_[0] > self.warmup:
            for f, v in x.items():
                score = st_[2][f].score_one(v)
                if score > self.threshold:
                    found.append((agg.tag, agg.window_start, f, score))
        if found:
            st_[1] += 1
            if st_[1] >= self.rebaseline:
                self.state[agg.tag] = [0, 0, {"mean": GuardedSAD(), "std": GuardedSAD()}]
        else:
            st_[1] = 0
            for f, v in x.items():
                st_[2][f].learn_one(v)
        return found


def test_columnar_detector_equals_river_models_per_tag() -> None:
    rng = np.random.default_rng(5)
    tags = [f"a/t{i}" for i in range(6)]
    ours = WindowDetector(threshold=4.0, warmup_windows=5, tags=tags[:5],
                          rebaseline_windows=4)
    ref = _PerTag(4.0, 5, 4)
    found_ours: list[Anomaly] = []
    found_ref: list[tuple[str, int, str, float]] = []
    for w in range(80):
        mean = rng.normal(50, 1, len(tags)) + np.where(rng.random(len(tags)) < 0.1, 20, 0)
        if 40 <= w < 50:
            mean[2] += 30  # a held level: flagged, then re-baselined
        std = np.abs(rng.normal(1, 0.1, len(tags)))
        std[3] = 0.0 if w > 60 else std[3]  # a sensor that gets stuck
        if w == 70:
            mean[1] = math.nan
        start = T0 + w * 1000
        found_ours += ours.observe_columns(tags, np.full(len(tags), start, np.int64), 1000,
                                           {"mean": mean, "std": std}, now_ms=w)
        for i, t in enumerate(tags):
            if t in tags[:5]:
                found_ref += ref.observe(Aggregate(t, start, start + 1000, 10, 0.0, 0.0,
                                                   float(mean[i]), float(std[i]), 0.0, 0.0))
    assert found_ref  # the data has anomalies to find
    key = sorted((a.tag, a.window_start, a.feature) for a in found_ours)
    assert key == sorted((t, s, f) for t, s, f, _ in found_ref)
    scores = {(a.tag, a.window_start, a.feature): a.score for a in found_ours}
    for t, s, f, score in found_ref:
        assert scores[(t, s, f)] == pytest.approx(score, rel=1e-9)
    assert all(a.detector == DETECTOR_NAME and a.window_end == a.window_start + 1000
               for a in found_ours)
    assert ours.rebaselined >= 1


def test_several_windows_of_a_tag_in_one_call_are_taken_in_window_order() -> None:
    a, b = (WindowDetector(threshold=3.0, warmup_windows=3, tags=["x"]) for _ in range(2))
    means = [10.0, 10.2, 9.9, 10.1, 10.0, 25.0, 10.05]
    together = a.observe_columns(["x"] * len(means),
                                 np.asarray([T0 + 1000 * i for i in range(len(means))][::-1]),
                                 1000, {"mean": np.asarray(means[::-1]),
                                        "std": np.ones(len(means))}, 0)
    alone = [x for i, m in enumerate(means)
             for x in b.observe(Aggregate("x", T0 + 1000 * i, T0 + 1000 * (i + 1), 10, m, m,
                                          m, 1.0, m, m), 0)]
    assert [(x.window_start, x.feature, x.score) for x in together] == [
        (x.window_start, x.feature, x.score) for x in alone]
    assert [x.window_start for x in together] == [T0 + 5000]


# -- asset records: one scatter == row by row --------------------------------------------

def test_asset_records_equal_a_row_by_row_build(catalog: Catalog) -> None:
    index = AssetIndex(catalog)
    rng = np.random.default_rng(3)
    paths = list(catalog.tags())
    rows = [(paths[int(i)], T0 + 1000 * int(w)) for i, w in
            zip(rng.integers(0, len(paths), 60), rng.integers(0, 3, 60), strict=True)]
    rows = list(dict.fromkeys(rows))  # one row per (tag, window) as a closed frame has
    n = len(rows)
    cols = {f: rng.normal(5, 1, n).tolist() for f in ("min", "max", "mean", "std", "first",
                                                       "last", "good_share")}
    frame = AggregateFrame("s", 1000, [r[0] for r in rows], [r[1] for r in rows],
                           [int(c) for c in rng.integers(1, 9, n)], **cols)
    got = index.records(frame)
    want: dict[tuple[str, int], dict[str, list[float]]] = {}
    for i, (tag, ws) in enumerate(rows):
        info = catalog.tags()[tag]
        if info.spec.kind != "analog":
            continue
        machine = catalog.machine_path(info.machine)
        want.setdefault((machine, ws), {})[tag] = [float(getattr(frame, f)[i])
                                                   for f in FEATURES]
    assert [(r.machine, r.window_start) for r in got] == sorted(want, key=lambda k: (k[1],
                                                                                   k[0]))
    for r in got:
        assert isinstance(r, AssetWindow) and r.window_ms == 1000
        for j, tag in enumerate(r.tags):
            expect = want[(r.machine, r.window_start)].get(tag)
            if expect is None:
                assert np.isnan(r.values[j]).all()
            else:
                assert r.values[j].tolist() == expect
    arrays = {f: np.asarray(getattr(frame, f)) for f in (*FEATURES, "window_start")}
    again = index.records(frame, arrays)  # given as arrays: the same records
    assert [(r.machine, r.window_start) for r in again] == [
        (r.machine, r.window_start) for r in got]
    assert all(np.array_equal(x.values, y.values, equal_nan=True)
               for x, y in zip(again, got, strict=True))


def test_aggregate_frame_encodes_compact_json_and_refuses_non_finite() -> None:
    f = AggregateFrame("s", 1000, ["t"], [T0], [3], [1.0], [2.5], [1e16], [0.0], [1.0],
                       [2.0], [1.0])
    doc = json.loads(f.encode())
    assert doc["schema"] == "millstream.aggregates.v2" and doc["mean"] == [1e16]
    assert AggregateFrame.decode(f.encode()) == f
    bad = AggregateFrame("s", 1000, ["t"], [T0], [3], [1.0], [2.5], [math.inf], [0.0],
                         [1.0], [2.0], [1.0])
    with pytest.raises(ValueError, match="mean inf is not finite"):
        bad.encode()


def test_processor_builds_asset_records_when_asked(catalog: Catalog) -> None:
    from schemas.readings import FrameBuilder
    from streams.processor import FrameProcessor

    proc = FrameProcessor(catalog)
    cnc = "acme/plant1/machining/line1/cnc-01"
    fb = FrameBuilder("opcua-sim", epoch=1)
    for i in range(30):  # 3 s of two analog tags: the first 1 s window closes
        fb.add(f"{cnc}/spindle_temp", T0 + 100 * i, 60.0 + i)
        fb.add(f"{cnc}/vibration_rms", T0 + 100 * i, 2.0)
    frame = fb.flush()
    assert frame is not None
    out = proc.process(None, frame.encode(), "t", 0, 0, T0 + 60_000)
    [rec] = [r for r in out.assets if r.window_ms == 1000]
    assert (rec.machine, rec.window_start) == (cnc, T0)
    temp = rec.tags.index(f"{cnc}/spindle_temp")
    assert rec.feature("mean")[temp] == pytest.approx(64.5)  # 60..69
    assert rec.feature("count")[temp] == 10
