"""Window maths: vectorised frames against a naive per-reading recomputation."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Aggregate
from schemas.readings import Quality
from streams.windows import Partial, TumblingWindows

W = 1000
T0 = 1_763_760_000_000
TAGS = ["a/t1", "a/t2", "b/t3"]

Row = tuple[str, int, float | None, int]


def _arrays(rows: list[Row]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    return (
        [r[0] for r in rows],
        np.asarray([r[1] for r in rows], dtype=np.int64),
        np.asarray([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        np.asarray([r[3] for r in rows], dtype=np.int8),
    )


def _feed(w: TumblingWindows, rows: list[Row], cuts: list[int]) -> list[Aggregate]:
    out: list[Aggregate] = []
    bounds = [0, *sorted(c % (len(rows) + 1) for c in cuts), len(rows)]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            out.extend(w.add("src", *_arrays(rows[lo:hi])).closed)
    return out + w.flush_all()


def _naive(rows: list[Row]) -> dict[tuple[str, int], list[float]]:
    """Per-reading recomputation with no lateness: every valid reading counts."""
    groups: dict[tuple[str, int], list[tuple[int, int, float]]] = defaultdict(list)
    for i, (tag, ts, v, q) in enumerate(rows):
        if v is not None and q != Quality.BAD:
            groups[(tag, ts - ts % W)].append((ts, i, v))
    return {k: [v for _, _, v in sorted(g)] for k, g in groups.items()}


def _check(agg: Aggregate, vs: list[float]) -> None:
    mean = math.fsum(vs) / len(vs)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vs) / len(vs))
    assert agg.count == len(vs)
    assert (agg.min, agg.max, agg.first, agg.last) == (min(vs), max(vs), vs[0], vs[-1])
    scale = max(1.0, max(abs(v) for v in vs))
    assert agg.mean == pytest.approx(mean, rel=1e-9, abs=1e-9 * scale)
    assert agg.std == pytest.approx(std, rel=1e-7, abs=1e-9 * scale)


rows_st = st.lists(
    st.tuples(
        st.sampled_from(TAGS),
        st.integers(T0, T0 + 5 * W),
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
        st.sampled_from([0, 1, 2]),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_frames_split_anyhow_equal_naive(rows: list[Row], cuts: list[int]) -> None:
    # lateness larger than the span: nothing is late, so every split must agree
    w = TumblingWindows(W, lateness_ms=10 * W)
    aggs = _feed(w, rows, cuts)
    want = _naive(rows)
    assert {(a.tag, a.window_start) for a in aggs} == set(want)
    assert len(aggs) == len(want)
    for a in aggs:
        assert a.window_end == a.window_start + W
        _check(a, want[(a.tag, a.window_start)])


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60), cut=st.integers(1, 59))
def test_merge_of_partials_equals_one_shot(xs: list[float], cut: int) -> None:
    cut = min(cut, len(xs) - 1)

    def build(vals: list[float], t0: int) -> Partial:
        p = Partial.of(vals[0], t0)
        for i, v in enumerate(vals[1:], 1):
            p.merge(Partial.of(v, t0 + i))
        return p

    whole, left, right = build(xs, 0), build(xs[:cut], 0), build(xs[cut:], cut)
    left.merge(right)
    assert left.n == whole.n
    assert (left.min, left.max, left.first, left.last) == (
        whole.min, whole.max, whole.first, whole.last)
    assert left.mean == pytest.approx(whole.mean, abs=1e-9)
    assert left.m2 == pytest.approx(whole.m2, rel=1e-9, abs=1e-6)


def test_window_closes_by_watermark_and_late_readings_are_counted() -> None:
    w = TumblingWindows(W, lateness_ms=500)
    r = w.add("src", *_arrays([("a/t1", T0 + 100, 1.0, 0), ("a/t1", T0 + 900, 3.0, 0)]))
    assert r.closed == [] and r.aggregated == 2
    # watermark = T0+1400-500 = T0+900 < window end T0+1000: still open
    r = w.add("src", *_arrays([("a/t1", T0 + 1400, 5.0, 0)]))
    assert r.closed == []
    r = w.add("src", *_arrays([("a/t1", T0 + 1500, 7.0, 0)]))  # watermark T0+1000
    assert [(a.window_start, a.count, a.mean, a.first, a.last) for a in r.closed] == [
        (T0, 2, 2.0, 1.0, 3.0)]
    r = w.add("src", *_arrays([("a/t1", T0 + 999, 9.0, 0), ("a/t1", T0 + 1600, 9.0, 0)]))
    assert r.late == 1 and r.aggregated == 1
    [last] = w.flush_all()
    assert (last.window_start, last.count, last.mean) == (T0 + W, 3, 7.0)
    assert w.open_windows == 0


def test_bad_quality_and_missing_values_are_counted_not_aggregated() -> None:
    w = TumblingWindows(W, lateness_ms=0)
    r = w.add("src", *_arrays([
        ("a/t1", T0, 1.0, Quality.GOOD), ("a/t1", T0 + 1, 100.0, Quality.BAD),
        ("a/t1", T0 + 2, None, Quality.BAD), ("a/t1", T0 + 3, 3.0, Quality.UNCERTAIN),
    ]))
    assert (r.bad_quality, r.aggregated) == (2, 2)
    [a] = w.flush_all()
    assert (a.count, a.max, a.mean) == (2, 3.0, 2.0)


def test_only_bad_readings_still_move_event_time() -> None:
    w = TumblingWindows(W, lateness_ms=0)
    w.add("src", *_arrays([("a/t1", T0, 1.0, 0)]))
    r = w.add("src", *_arrays([("a/t1", T0 + W, None, Quality.BAD)]))
    assert [a.count for a in r.closed] == [1]


def test_sources_have_their_own_watermarks() -> None:
    w = TumblingWindows(W, lateness_ms=0)
    w.add("s1", *_arrays([("a/t1", T0, 1.0, 0)]))
    r = w.add("s2", *_arrays([("b/t3", T0 + 5 * W, 1.0, 0)]))
    assert r.closed == []  # s2 being ahead closes nothing of s1
    r = w.add("s1", *_arrays([("a/t1", T0 + W, 2.0, 0)]))
    assert [a.tag for a in r.closed] == ["a/t1"]


def test_idle_source_closes_by_processing_time() -> None:
    w = TumblingWindows(W, lateness_ms=1000)
    w.add("src", *_arrays([("a/t1", T0 + 10, 1.0, 0)]), now_ms=50_000)
    assert w.close_idle(51_000) == []
    [a] = w.close_idle(52_000)
    assert a.window_start == T0
    r = w.add("src", *_arrays([("a/t1", T0 + 20, 1.0, 0)]), now_ms=52_001)
    assert r.late == 1


def test_closed_aggregates_are_ordered_and_encodable() -> None:
    w = TumblingWindows(W, lateness_ms=0)
    rows: list[Row] = [(t, T0 + i * 300, float(i), 0) for i in range(10) for t in TAGS[::-1]]
    aggs = _feed(w, rows, [7, 20])
    starts = [a.window_start for a in aggs]
    assert starts == sorted(starts)
    for a in aggs:
        assert Aggregate.decode(a.encode()) == a


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        TumblingWindows(0, 0)
