"""The k-NN pattern detector's logic: repeating shapes are normal, new shapes are not, and
its training set stays bounded, recent, and free of flagged steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streams.detectors.pattern import KnnDetector


def cycle(i: int, rng: np.random.Generator) -> float:
    """A work cycle: ramp up for 30 steps, hold for 10, drop; a little noise."""
    phase = i % 40
    return (phase / 30.0 if phase < 30 else 1.0) * 10.0 + rng.normal(0.0, 0.05)


def run(det: KnnDetector, values: list[float]) -> list[float]:
    out = []
    for v in values:
        x = np.array([v])
        out.append(float(det.score_many(x)[0]))
        det.learn_many(x)
    return out


def test_a_repeating_cycle_is_normal_and_a_new_shape_in_its_range_is_not() -> None:
    rng = np.random.default_rng(0)
    det = KnnDetector(dim=8, size=64, warmup=100)  # spans 2.5 cycles
    det.add_columns(["a"])
    normal = run(det, [cycle(i, rng) for i in range(2000)])
    finite = [s for s in normal[200:] if math.isfinite(s)]
    assert len(finite) > 1500
    assert sum(s > 1.0 for s in finite) / len(finite) < 0.02
    # the same values, but the ramp runs backwards: no single value is out of range
    backwards = run(det, [10.0 - (i % 30) / 3.0 + rng.normal(0.0, 0.05)
                          for i in range(2000, 2030)])
    assert max(backwards) > 1.0, "a shape never seen before must stand out"


def test_a_random_reservoir_is_bounded_and_spans_the_horizon() -> None:
    det = KnnDetector(dim=2, size=16, horizon=200, replace="random", warmup=5)
    det.add_columns(["a"])
    for i in range(5000):
        det.learn_many(np.array([float(i)]), learn=np.array([True]))
    assert det.train.shape == (1, 16, 2)
    assert det.filled[0] == 16 and det.learned[0] == 4999
    ends = det.train[0, :, 1]
    assert np.isfinite(ends).all()
    assert ends.max() > 4500, "recent windows enter the set"
    assert ends.min() > 4000, "windows older than a few horizons have been replaced"


def test_flagged_steps_never_enter_the_training_set() -> None:
    det = KnnDetector(dim=2, size=8, warmup=2, relearn=1.0)  # never relearn
    det.add_columns(["a", "b"])
    for i in range(20):
        det.learn_many(np.array([float(i), 1000.0 + i]), learn=np.array([True, False]))
    assert det.filled.tolist() == [8.0, 0.0]
    assert np.isnan(det.train[1]).all()
    assert np.isfinite(det.lags[1]).all(), "the lag buffer still follows the values"


def test_a_shape_that_persists_becomes_normal() -> None:
    """A new shape that keeps being flagged is learned: the flags stop, instead of the
    shape (never learned because flagged) being flagged for ever."""
    rng = np.random.default_rng(3)
    flags = {}
    for relearn in (0.03, 1.0):  # the default, and never
        det = KnnDetector(dim=4, size=32, warmup=20, relearn=relearn)
        det.add_columns(["a"])
        run(det, [cycle(i, rng) for i in range(400)])
        shifted = run(det, [50.0 + cycle(i, rng) for i in range(400, 800)])
        assert sum(s > 1.0 for s in shifted[:50]) > 40, "the shift itself is flagged"
        flags[relearn] = sum(s > 1.0 for s in shifted[-200:])
    assert flags[1.0] == 200, "without relearning the new shape is flagged for ever"
    assert flags[0.03] < 50, "relearning lets the new shape become normal"


def test_state_is_json_ready_and_restores_the_same_scores() -> None:
    rng = np.random.default_rng(1)
    det = KnnDetector(dim=4, size=32, warmup=10)
    det.add_columns(["a", "b"])
    for i in range(300):
        det.learn_many(np.array([cycle(i, rng), cycle(i + 7, rng)]))
    back = KnnDetector.from_state(json.loads(json.dumps(det.state())))
    probe = np.array([3.0, 12.0])
    np.testing.assert_array_equal(back.score_many(probe), det.score_many(probe))


def test_nearest_replacement_keeps_every_part_of_a_cycle() -> None:
    """Replacing the most similar stored window keeps the set spread over the whole
    pattern: after many cycles every phase of the cycle still has a close neighbour."""
    rng = np.random.default_rng(2)
    det = KnnDetector(dim=4, size=48, warmup=10)
    det.add_columns(["a"])
    for i in range(4000):
        det.learn_many(np.array([cycle(i, rng)]), learn=np.array([True]))
    assert det.filled[0] == 48
    phases = [np.array([cycle(p + j, rng) for j in range(4)]) for p in range(40)]
    nearest = [float(np.abs(det.train[0] - v).mean(axis=1).min()) for v in phases]
    covered = sum(d < 0.5 for d in nearest)
    assert covered >= 36, f"phases of the cycle lost their neighbours: {nearest}"


@pytest.mark.parametrize("config", [{"dim": 0}, {"k": 0}, {"size": 2, "k": 3},
                                    {"size": 64, "horizon": 10},
                                    {"replace": "oldest"}])
def test_a_bad_configuration_names_its_values(config: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="KnnDetector"):
        KnnDetector(**config)  # type: ignore[arg-type]
