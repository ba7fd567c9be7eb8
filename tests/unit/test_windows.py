"""Window maths and event time: WindowStore against hand-made cases and a naive recount."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import StreamsSpec, WindowSpec
from schemas.readings import Quality
from streams.panes import PaneStats, group_frame, merge, sort_frame
from streams.windows import Closed, WindowStore

W = 1000
T0 = 1_763_760_000_000
KEY = ("src", 0)

Row = tuple[str, int, float | None, int]


def _add(w: WindowStore, rows: Sequence[Row], key: tuple[str, int] = KEY, seq0: int = 1,
         now_ms: int = 0) -> tuple[list[Closed], int, np.ndarray | None]:
    res = w.add(key, [r[0] for r in rows], np.asarray([r[1] for r in rows], np.int64),
                np.asarray([np.nan if r[2] is None else r[2] for r in rows], np.float64),
                np.asarray([r[3] for r in rows], np.int8),
                np.arange(seq0, seq0 + len(rows), dtype=np.int64), now_ms)
    return res.closed, res.aggregated, res.late


def _rows(closed: list[Closed]) -> list[tuple[int, str, int, int, float, float, float]]:
    """(size, tag, start, count, mean, first, last) of every closed window with a value."""
    out = []
    for c in closed:
        s = c.stats
        for i, tag in enumerate(c.tag):
            if s.n[i]:
                out.append((c.window_ms, tag, int(c.window_start[i]), int(s.n[i]),
                            float(s.mean[i]), float(s.first[i]), float(s.last[i])))
    return out


def test_window_closes_by_watermark_and_late_readings_are_flagged() -> None:
    w = WindowStore([WindowSpec(size_ms=W)], lateness_ms=500)
    closed, n, _ = _add(w, [("a", T0 + 100, 1.0, 0), ("a", T0 + 900, 3.0, 0)])
    assert closed == [] and n == 2
    closed, _, _ = _add(w, [("a", T0 + 1400, 5.0, 0)], seq0=3)  # watermark T0+900
    assert closed == []
    closed, _, _ = _add(w, [("a", T0 + 1500, 7.0, 0)], seq0=4)  # watermark T0+1000
    assert _rows(closed) == [(W, "a", T0, 2, 2.0, 1.0, 3.0)]
    closed, n, late = _add(w, [("a", T0 + 999, 9.0, 0), ("a", T0 + 1600, 9.0, 0)], seq0=5)
    assert n == 1 and late is not None and late.tolist() == [True, False]
    assert _rows(w.flush_all()) == [(W, "a", T0 + W, 3, 7.0, 5.0, 9.0)]
    assert w.open_windows == 0


def test_hopping_window_is_the_merge_of_its_hops() -> None:
    w = WindowStore([WindowSpec(size_ms=3 * W, hop_ms=W)], lateness_ms=0)
    closed, _, _ = _add(w, [("a", T0 + i * W + 10, float(i), 0) for i in range(4)])
    got = {r[2]: r for r in _rows(closed + w.flush_all())}
    # windows starting 2 hops before the first reading up to the last reading's hop
    assert sorted(got) == [T0 + k * W for k in range(-2, 4)]
    assert got[T0][3:] == (3, 1.0, 0.0, 2.0)
    assert got[T0 + W][3:] == (3, 2.0, 1.0, 3.0)
    assert got[T0 + 3 * W][3:] == (1, 3.0, 3.0, 3.0)


def test_late_for_a_small_window_still_counts_in_a_larger_open_one() -> None:
    w = WindowStore([WindowSpec(size_ms=W), WindowSpec(size_ms=10 * W)], lateness_ms=0)
    _add(w, [("a", T0 + 100, 1.0, 0)])
    closed, _, _ = _add(w, [("a", T0 + 2500, 2.0, 0)], seq0=2)
    assert [(r[0], r[2]) for r in _rows(closed)] == [(W, T0)]
    res = w.add(KEY, ["a"], np.asarray([T0 + 200]), np.asarray([3.0]),
                np.asarray([0], np.int8), np.asarray([3]))
    assert res.late is not None and res.late.tolist() == [True]
    assert res.missed_ms == [[W]] and res.aggregated == 1
    big = [r for r in _rows(w.flush_all()) if r[0] == 10 * W]
    assert big == [(10 * W, "a", T0, 3, 2.0, 1.0, 2.0)]


def test_a_late_reading_never_reopens_a_closed_hopping_window() -> None:
    w = WindowStore([WindowSpec(size_ms=3 * W, hop_ms=W)], lateness_ms=0)
    _add(w, [("a", T0 + 100, 1.0, 0)])
    emitted = _rows(_add(w, [("a", T0 + 10 * W, 2.0, 0)], seq0=2)[0])
    # pane T0+8s stays (its window from T0+8s is open) but windows ending <= T0+10s closed
    closed, _, late = _add(w, [("a", T0 + 8 * W + 500, 5.0, 0)], seq0=3)
    assert late is not None and late.tolist() == [True] and closed == []
    rest = _rows(w.flush_all())
    starts = [r[2] for r in emitted + rest]
    assert len(starts) == len(set(starts))
    assert {r[2]: r[3] for r in rest}[T0 + 8 * W] == 2  # only the open window has it


def test_bad_quality_counts_in_good_share_only() -> None:
    w = WindowStore([WindowSpec(size_ms=W)], lateness_ms=0)
    _add(w, [("a", T0, 1.0, Quality.GOOD), ("a", T0 + 1, 100.0, Quality.BAD),
             ("a", T0 + 2, None, Quality.BAD), ("a", T0 + 3, 3.0, Quality.UNCERTAIN),
             ("b", T0 + 4, None, Quality.BAD)])
    [c] = w.flush_all()
    i = c.tag.index("a")
    assert (c.stats.n[i], c.stats.total[i], c.stats.good[i], c.stats.max[i]) == (2, 4, 1, 3.0)
    j = c.tag.index("b")  # only BAD readings: a row without a value (not published)
    assert (c.stats.n[j], c.stats.total[j]) == (0, 1)


def test_sources_and_partitions_have_their_own_watermarks() -> None:
    w = WindowStore([WindowSpec(size_ms=W)], lateness_ms=0)
    _add(w, [("a", T0, 1.0, 0)], key=("s1", 0))
    assert _add(w, [("a", T0 + 5 * W, 1.0, 0)], key=("s1", 1))[0] == []
    assert _add(w, [("b", T0 + 5 * W, 1.0, 0)], key=("s2", 0))[0] == []
    closed, _, _ = _add(w, [("a", T0 + W, 2.0, 0)], key=("s1", 0), seq0=2)
    assert [(c.source, c.partition, c.tag) for c in closed] == [("s1", 0, ["a"])]


def test_idle_source_closes_by_processing_time() -> None:
    w = WindowStore([WindowSpec(size_ms=W)], lateness_ms=1000)
    _add(w, [("a", T0 + 10, 1.0, 0)], now_ms=50_000)
    assert w.close_idle(51_000) == []
    [c] = w.close_idle(52_000)
    assert int(c.window_start[0]) == T0
    _, n, late = _add(w, [("a", T0 + 20, 1.0, 0)], seq0=2, now_ms=52_001)
    assert n == 0 and late is not None and late.all()


def test_snapshot_restores_through_json_and_continues_identically() -> None:
    specs = [WindowSpec(size_ms=W), WindowSpec(size_ms=4 * W, hop_ms=2 * W)]
    a, b = WindowStore(specs, 500), WindowStore(specs, 500)
    first = [("a", T0 + i * 300, float(i), i % 3) for i in range(12)]
    _add(a, first)
    snap = json.loads(json.dumps(a.snapshot(), allow_nan=False))  # plain data, strict JSON
    b.restore(snap)
    rest = [("a", T0 + 3600 + i * 300, float(i * i), 0) for i in range(12)]
    assert _rows(_add(a, rest, seq0=13)[0]) == _rows(_add(b, rest, seq0=13)[0])
    assert _rows(a.flush_all()) == _rows(b.flush_all())


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60), cut=st.integers(1, 59))
def test_merge_of_partials_equals_one_shot(xs: list[float], cut: int) -> None:
    cut = min(cut, len(xs) - 1)

    def build(lo: int, hi: int) -> PaneStats:
        n = hi - lo
        ids, ts = np.zeros(n, np.int64), np.arange(lo, hi, dtype=np.int64)
        order = sort_frame(ids, ts, ts)
        _, _, s = group_frame(ids[order], ts[order], ts[order],
                              np.asarray(xs[lo:hi])[order], np.zeros(n, np.int8),
                              np.ones(n, bool), 10**6)
        return s

    whole, parts = build(0, len(xs)), merge(build(0, cut), build(cut, len(xs)))
    for name in ("n", "total", "min", "max", "first", "last", "first_ts", "last_ts"):
        assert getattr(parts, name).tolist() == getattr(whole, name).tolist(), name
    assert parts.mean[0] == pytest.approx(whole.mean[0], abs=1e-9)
    assert parts.m2[0] == pytest.approx(whole.m2[0], rel=1e-9, abs=1e-6)
    assert math.isclose(whole.mean[0], math.fsum(xs) / len(xs), abs_tol=1e-9)


def test_window_config_is_checked_and_the_shorthand_still_works() -> None:
    assert [w.size_ms for w in StreamsSpec(window_ms=2000).window_specs()] == [2000]
    spec = StreamsSpec(windows=[WindowSpec(size_ms=1000),
                                WindowSpec(size_ms=60_000, hop_ms=10_000)])
    assert [(w.size_ms, w.pane_ms) for w in spec.window_specs()] == [(1000, 1000),
                                                                      (60_000, 10_000)]
    assert spec.idle_timeout_ms == 1000 + spec.lateness_ms
    with pytest.raises(ValueError, match="multiple of hop_ms"):
        WindowSpec(size_ms=1000, hop_ms=300)
    with pytest.raises(ValueError, match="size twice"):
        StreamsSpec(windows=[WindowSpec(size_ms=1000), WindowSpec(size_ms=1000, hop_ms=500)])
    with pytest.raises(ValueError, match="lateness_ms"):
        WindowStore([WindowSpec(size_ms=W)], -1)


def test_the_readme_windows_example_is_a_valid_streams_section() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Windows and event time"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    spec = StreamsSpec.model_validate(yaml.safe_load(block.group(1))["streams"])
    assert [(w.size_ms, w.pane_ms) for w in spec.window_specs()] == [
        (1000, 1000), (60_000, 10_000), (900_000, 900_000)]
    WindowStore(spec.window_specs(), spec.lateness_ms, spec.idle_timeout_ms)
