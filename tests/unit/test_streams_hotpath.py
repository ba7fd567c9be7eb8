"""The worker's fast paths give what the straightforward paths give.

Each shortcut taken for speed (frames folded in batches, asset records scattered at once,
a sequence run that continues the last, aggregate frames encoded by msgspec) is checked
here against the plain path it replaces, on random input; and frames waiting to be folded
are in a partition's snapshot.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog, WindowSpec
from streams.assets import FEATURES, AssetIndex, AssetWindow
from streams.dedup import SeqDedup
from streams.state import decode_state, encode_state
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


_Cols = tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]


def _one(value: float, ts: int = T0 + 100) -> _Cols:
    return (np.asarray([ts], np.int64), np.asarray([value]), np.zeros(1, np.int8),
            np.asarray([1], np.int64))


def test_idle_close_of_one_partition_closes_its_waiting_frames_only() -> None:
    w = WindowStore([WindowSpec(size_ms=1000)], 1000, idle_ms=2000)
    w.add(("s", 0), ["a"], *_one(1.0), now_ms=10_000)
    w.add(("s", 1), ["a"], *_one(2.0), now_ms=10_000)
    assert w.open_windows == 2  # both frames still wait to be folded
    [c] = w.close_idle(20_000, 0)
    assert (c.source, c.partition, c.tag, float(c.stats.mean[0])) == ("s", 0, ["a"], 1.0)
    [c] = w.close_idle(20_000)
    assert (c.partition, float(c.stats.mean[0])) == (1, 2.0)


def _cols(rows: list[Any], t: int, seq: int) -> tuple[list[str], _Cols]:
    return [f"tag{r[0]}" for r in rows], (
        np.asarray([t + r[1] for r in rows], np.int64),
        np.asarray([r[2] for r in rows], np.float64), np.asarray([r[3] for r in rows], np.int8),
        np.arange(seq, seq + len(rows), dtype=np.int64))


@pytest.mark.parametrize("arrays", [True, False])
def test_a_snapshot_carries_the_waiting_frames(arrays: bool) -> None:
    w = WindowStore(SPECS, 1200)
    for k in range(3):  # three frames inside one pane: the first sets the watermark (and
        # is folded), nothing closes after it, so the next two wait
        w.add(("s", 0), ["a", "b"], np.asarray([T0 + 10 * k] * 2, np.int64),
              np.asarray([1.0 + k, 5.0 if k else math.nan]), np.zeros(2, np.int8),
              np.asarray([2 * k + 1, 2 * k + 2], np.int64), 0)
    assert sum(len(st_.pending) for st_ in w._streams.values()) == 2
    snap = w.snapshot(0, arrays=arrays)
    doc = (decode_state(encode_state(snap)) if arrays
           else json.loads(json.dumps(snap, allow_nan=False)))  # strict JSON
    other = WindowStore(SPECS, 1200)
    other.restore(doc, 0)
    assert sum(len(st_.pending) for st_ in other._streams.values()) == 1  # still waiting
    for store in (w, other):
        [c] = [c for c in store.flush_all() if c.window_ms == 1000]
        assert c.tag == ["a", "b"] and c.stats.n.tolist() == [3, 2]
        assert c.stats.total.tolist() == [3, 3]  # the reading without a value counts too
        assert c.stats.mean.tolist() == [2.0, 5.0]


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(frame_st, min_size=2, max_size=16), cut=st.integers(1, 15))
def test_a_partition_restored_from_its_snapshot_closes_what_the_original_closes(
        frames: list[list[Any]], cut: int) -> None:
    """One partition's snapshot taken mid-run (frames may wait in the batch), encoded as a
    checkpoint and restored in another store: both go on to close the same windows with
    the same values, to the last bit; the other partition's streams are not in it."""
    cut = min(cut, len(frames) - 1)
    a = WindowStore(SPECS, 1200)
    b = WindowStore(SPECS, 1200)
    got_a: list[Closed] = []
    got_b: list[Closed] = []
    t, seq = T0, 1
    for k, rows in enumerate(frames):
        if k == cut:
            b.restore(decode_state(encode_state(a.snapshot(0, arrays=True))), 0)
            assert b.keys() == [("s", 0)]
        t += 350
        tags, cols = _cols(rows, t, seq)
        seq += len(rows)
        if k < cut:
            a.add(("s", 0), tags, *cols, 0)
            a.add(("o", 1), tags, *cols, 0)
        else:
            got_a += a.add(("s", 0), tags, *cols, 0).closed
            got_b += b.add(("s", 0), tags, *cols, 0).closed
    got_a += a.flush_all(0)
    got_b += b.flush_all()
    ra, rb = _closed_rows(got_a), _closed_rows(got_b)
    assert ra == rb


# -- dedup: a continuing run == the general path -----------------------------------------

def test_fresh_run_equals_fresh_on_runs_gaps_and_repeats() -> None:
    runs = [(1, 10), (11, 5), (11, 5), (30, 4), (16, 14), (5, 40), (46, 1), (100, 3)]
    fast, slow = SeqDedup(tolerance=20), SeqDedup(tolerance=20)
    for first, n in runs:
        a, why_a = fast.fresh_run("s", 1, first, n)
        b, why_b = slow.fresh("s", 1, np.arange(first, first + n, dtype=np.int64))
        assert a.tolist() == b.tolist() and why_a == why_b
    assert fast.snapshot() == slow.snapshot() and fast.duplicates == slow.duplicates


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


def test_a_layout_1_snapshot_without_waiting_frames_is_still_read(catalog: Catalog) -> None:
    """Checkpoints written before frames waited in batches (layout 1, no ``pending``) are
    restored: the worker goes on from them as the one that wrote them does."""
    from schemas.readings import FrameBuilder
    from streams.processor import FrameProcessor

    cnc = "acme/plant1/machining/line1/cnc-01"
    frames = []
    fb = FrameBuilder("opcua-sim", epoch=1)
    for i in range(40):  # 4 s, one frame per 100 ms
        fb.add(f"{cnc}/spindle_temp", T0 + 100 * i, 60.0 + (i % 7))
        frame = fb.flush()
        assert frame is not None
        frames.append(frame.encode())
    old = FrameProcessor(catalog)
    old.windows.max_pending = 0  # every frame folded at once, as layout 1's worker did
    for i, f in enumerate(frames[:15]):
        old.process(None, f, "r", 0, i, T0 + 60_000)
    snap = json.loads(json.dumps(old.snapshot(0)))
    old.windows.max_pending = new_default = FrameProcessor(catalog).windows.max_pending
    assert snap["version"] == 2 and new_default > 0
    snap["version"] = 1
    for doc in snap["windows"]["streams"]:
        assert doc.pop("pending") is None
    new = FrameProcessor(catalog)
    new.restore(snap, 0)
    rows = {}
    for name, proc in (("old", old), ("new", new)):
        got = [proc.process(None, f, "r", 0, 15 + i, T0 + 60_000) for i, f in
               enumerate(frames[15:])] + [proc.flush(T0 + 60_000)]
        rows[name] = sorted((a.window_ms, a.window_start, a.count, a.mean)
                            for out in got for fr in out.aggregate_frames
                            for a in fr.aggregates())
    assert rows["new"] == rows["old"] and len(rows["new"]) >= 3
