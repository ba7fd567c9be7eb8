"""The window detector: warm-up, threshold, stuck sensors, learning only from normal windows."""

from __future__ import annotations

import math
import random

import pytest

from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly
from streams.detect import (
    DETECTOR_NAME,
    MAX_SCORE,
    GuardedSAD,
    WindowDetector,
    detector_from_catalog,
)

TAG = "acme/plant1/machining/line1/cnc-01/spindle_temp"
T0 = 1_763_760_000_000


def _agg(i: int, mean: float, std: float, tag: str = TAG) -> Aggregate:
    return Aggregate(tag=tag, window_start=T0 + i * 1000, window_end=T0 + (i + 1) * 1000,
                     count=10, min=mean - 2 * std, max=mean + 2 * std, mean=mean, std=std,
                     first=mean, last=mean)


def _normal(det: WindowDetector, n: int, seed: int = 1, start: int = 0) -> list[Anomaly]:
    rng = random.Random(seed)
    found: list[Anomaly] = []
    for i in range(start, start + n):
        found += det.observe(_agg(i, rng.gauss(70, 0.5), abs(rng.gauss(1.0, 0.05))), 0)
    return found


def test_guarded_sad_matches_river_on_ordinary_data() -> None:
    from river import anomaly

    ours, river = GuardedSAD(), anomaly.StandardAbsoluteDeviation()
    rng = random.Random(3)
    for _ in range(200):
        y = rng.gauss(5, 2)
        ours.learn_one(y)
        river.learn_one(None, y)
    for y in (5.0, 9.0, -3.0):
        assert ours.score_one(y) == pytest.approx(river.score_one(None, y), rel=1e-6)


def test_guarded_sad_constant_history_scores_finite() -> None:
    m = GuardedSAD()
    assert m.score_one(1.0) == 0.0  # nothing learnt yet
    for _ in range(20):
        m.learn_one(0.0)
    assert m.score_one(0.0) == 0.0
    assert m.score_one(1e-15) < 1.0  # rounding noise is not an anomaly
    assert m.score_one(0.5) > 1e6  # a stuck sensor that comes alive
    assert math.isfinite(m.score_one(1e300))
    assert m.score_one(float("nan")) == MAX_SCORE
    m.learn_one(float("nan"))
    assert m.n == 20


def test_warmup_emits_nothing_even_for_outliers() -> None:
    det = WindowDetector(threshold=6.0, warmup_windows=5, tags=[TAG])
    found = [det.observe(_agg(i, 70.0 if i % 2 else 500.0, 1.0), 0) for i in range(5)]
    assert found == [[]] * 5
    assert det.scored == 0


def test_flags_above_threshold_with_contract_fields() -> None:
    det = WindowDetector(threshold=6.0, warmup_windows=10, tags=[TAG])
    assert _normal(det, 50) == []
    [a] = det.observe(_agg(50, 80.0, 1.0), now_ms=123)
    assert (a.feature, a.value, a.threshold, a.detector) == ("mean", 80.0, 6.0, DETECTOR_NAME)
    assert a.score > 6.0 and a.detected_at == 123 and len(a.anomaly_id) == 32
    assert (a.window_start, a.window_end) == (T0 + 50_000, T0 + 51_000)
    assert Anomaly.decode(a.encode()) == a
    assert det.observe(_agg(51, 70.2, 1.0), 0) == []  # a small deviation is not


def test_stuck_sensor_scores_high_not_nan() -> None:
    det = WindowDetector(threshold=6.0, warmup_windows=10, tags=[TAG])
    _normal(det, 50)
    found = det.observe(_agg(50, 70.0, 0.0), 0)
    assert [a.feature for a in found] == ["std"]
    assert math.isfinite(found[0].score) and found[0].score > 6.0


def test_learns_only_from_windows_it_did_not_flag() -> None:
    det = WindowDetector(threshold=6.0, warmup_windows=10, tags=[TAG], rebaseline_windows=1000)
    _normal(det, 50)
    # a drift that stays: if it were learnt, it would soon stop being flagged
    flagged = [bool(det.observe(_agg(50 + i, 90.0, 1.0), 0)) for i in range(100)]
    assert all(flagged)
    assert det.flagged == 100


def test_a_level_held_for_rebaseline_windows_becomes_the_new_normal() -> None:
    det = WindowDetector(threshold=6.0, warmup_windows=10, tags=[TAG], rebaseline_windows=30)
    assert not _normal(det, 50)
    rng = random.Random(7)
    flagged = [bool(det.observe(_agg(50 + i, rng.gauss(90, 0.5), abs(rng.gauss(1.0, 0.05))),
                                0)) for i in range(100)]
    # 30 windows flagged, then a fresh warm-up on the new level, then quiet at the new level
    assert flagged[:30] == [True] * 30
    assert not any(flagged[30:])
    assert det.rebaselined == 1
    # and a departure from the new normal is flagged again
    assert det.observe(_agg(200, 70.0, 1.0), 0)


def test_tags_outside_the_set_are_ignored() -> None:
    det = WindowDetector(warmup_windows=1, tags=[TAG])
    for i in range(5):
        assert det.observe(_agg(i, 1e6 * i, 1.0, tag="x/y"), 0) == []


def test_from_catalog_uses_analog_tags_only(catalog: Catalog) -> None:
    det = detector_from_catalog(catalog)
    assert det.tags is not None and TAG in det.tags
    assert "acme/plant1/machining/line1/cnc-01/running" not in det.tags
    assert "acme/plant1/machining/line1/cnc-01/part_count" not in det.tags
    assert (det.threshold, det.warmup_windows, det.features) == (6.0, 10, ("mean", "std"))
