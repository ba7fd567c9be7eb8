"""The adaptive thresholds' fixed-size running quantile, against exact quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from streams.detectors import SpikeDetector
from streams.detectors.sketch import BINS, BLOCKS, ScoreSketch

ROW = np.array([0])


def feed(values: np.ndarray, horizon: int = 500, every: int = 10) -> ScoreSketch:
    """Push one row's values, reading the quantile every ``every`` values as detectors do."""
    sk = ScoreSketch(horizon, 1)
    for i, v in enumerate(values):
        sk.push(ROW, np.array([v]))
        if i % every == every - 1:
            sk.quantile(ROW, 0.99)
    return sk


def q99(sk: ScoreSketch) -> float:
    return float(sk.quantile(ROW, 0.99)[0])


@pytest.mark.parametrize("draw", [
    lambda rng, n: np.abs(rng.normal(size=n)),
    lambda rng, n: rng.chisquare(3, size=n) * 1e-3,
    lambda rng, n: rng.exponential(250.0, size=n),
])
def test_the_high_quantile_is_within_a_bin_of_the_recent_values(draw: object) -> None:
    rng = np.random.default_rng(3)
    errors = []
    for _ in range(20):
        values = draw(rng, 1500)  # type: ignore[operator]
        exact = np.quantile(values[-500:], 0.99)
        errors.append(q99(feed(values)) / exact - 1.0)
    assert abs(np.mean(errors)) < 0.08  # no bias beyond a few per cent
    assert np.max(np.abs(errors)) < 0.25  # one bin is 1.2x; the 0.99 quantile of 500 is noisy


def test_old_values_decay_away() -> None:
    rng = np.random.default_rng(4)
    sk = feed(np.concatenate([50 + rng.random(2000), rng.random(2000)]))
    assert q99(sk) < 1.2  # the regime of 4000-2000 steps ago is forgotten
    assert 375 <= sk.weight(ROW)[0] <= 500  # between 3/4 of ``horizon`` values and all


def test_the_span_follows_a_scale_change_either_way() -> None:
    rng = np.random.default_rng(5)
    base = np.abs(rng.normal(size=1000))
    up = feed(np.concatenate([base, 1e6 * np.abs(rng.normal(size=3000))]))
    assert q99(up) == pytest.approx(1e6 * 2.576, rel=0.2)
    down = feed(np.concatenate([base, 1e-7 * np.abs(rng.normal(size=3000))]))
    assert q99(down) == pytest.approx(1e-7 * 2.576, rel=0.2)


def test_a_tiny_first_value_and_long_zero_runs_do_not_strand_the_anchor() -> None:
    rng = np.random.default_rng(6)
    tiny_first = feed(np.concatenate([[1e-12], np.abs(rng.normal(size=1500))]))
    assert q99(tiny_first) == pytest.approx(2.576, rel=0.2)
    zeros = feed(np.concatenate([[1.0], np.zeros(5000)]))
    assert q99(zeros) < 1e-6 and np.isfinite(zeros.ref[0])
    back = feed(np.concatenate([[1.0], np.zeros(5000), np.abs(rng.normal(size=1500))]))
    assert q99(back) == pytest.approx(2.576, rel=0.2)


def test_rows_are_independent_and_empty_rows_read_nan() -> None:
    sk = ScoreSketch(100, 3)
    for _ in range(200):
        sk.push(np.array([0, 2]), np.array([1.0, 1000.0]))
    q = sk.quantile(np.arange(3), 0.5)
    assert q[0] == pytest.approx(1.0, rel=0.2) and q[2] == pytest.approx(1000.0, rel=0.2)
    assert np.isnan(q[1])


def test_a_detector_state_is_small_and_a_ring_saved_before_the_sketch_restores() -> None:
    rng = np.random.default_rng(7)
    det = SpikeDetector()
    names = [f"t{i}" for i in range(50)]
    for _ in range(300):
        det.learn_one(dict(zip(names, rng.normal(size=50), strict=True)))
    state = det.state(arrays=True)["state"]
    assert state["hist_counts"].nbytes == 50 * BINS * BLOCKS  # 256 bytes a column
    # the layout before the sketch: a ring of values per column and its write position
    ring = np.full((50, 500), np.nan)
    ring[:, :300] = np.abs(rng.normal(size=(50, 300)))
    old = det.state()
    for key in ("hist_counts", "hist_cur", "hist_filled", "hist_ref"):
        del old["state"][key]
    old["state"]["hist"] = ring.tolist()
    old["state"]["hist_pos"] = [300] * 50
    restored = SpikeDetector.from_state(old)
    exact = np.quantile(ring[:, :300], 0.99, axis=1)
    got = restored.hist.quantile(np.arange(50), 0.99)
    assert np.all(np.abs(got / exact - 1.0) < 0.3)
    assert restored.score_one({"t0": 0.0}) == pytest.approx(det.score_one({"t0": 0.0}))
