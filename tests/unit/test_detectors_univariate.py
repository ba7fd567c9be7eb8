"""Each univariate detector finds its own kind of fault, on many tags in one array step."""

from __future__ import annotations

import numpy as np
import pytest

from streams.detectors import (
    ColumnDetector,
    CusumDetector,
    LevelShiftDetector,
    SpikeDetector,
    StuckDetector,
    TagBank,
    VarianceDetector,
)

N_TAGS = 200
FAULT_AT = 600


def series(kind: str, n: int = 900, seed: int = 0) -> np.ndarray:
    """(n, N_TAGS): noisy tags at different levels and scales; tag 0 gets the fault."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(-100, 1000, N_TAGS)
    scale = rng.uniform(0.1, 20, N_TAGS)
    x = level + scale * rng.normal(size=(n, N_TAGS))
    f, s = FAULT_AT, scale[0]
    if kind == "spike":
        x[f, 0] += 15 * s
    elif kind == "level_shift":
        x[f:, 0] += 5 * s
    elif kind == "cusum":  # a slow drift: 0.02 sigma per step
        x[f:, 0] += 0.02 * s * np.arange(n - f)
    elif kind == "variance":
        x[f:, 0] = level[0] + 5 * s * rng.normal(size=n - f)
    elif kind == "stuck":
        x[f:, 0] = x[f - 1, 0]
    return x


def first_flags(det: ColumnDetector, x: np.ndarray) -> tuple[int | None, float]:
    """Step of the first flag on tag 0 after the fault; false-flag rate of the others."""
    det.add_columns([f"t{i}" for i in range(N_TAGS)])
    first, false = None, 0
    for t, row in enumerate(x):
        score = det.score_many(row)
        det.learn_many(row)
        if t >= FAULT_AT and first is None and score[0] > 1:
            first = t
        false += int(np.count_nonzero(score[1:] > 1))
    return first, false / (len(x) * (N_TAGS - 1))


@pytest.mark.parametrize(("cls", "delay"), [
    (SpikeDetector, 0), (LevelShiftDetector, 5), (CusumDetector, 150),
    (VarianceDetector, 20), (StuckDetector, 40),
], ids=lambda c: getattr(c, "name", ""))
def test_each_detector_finds_its_fault_soon_and_rarely_flags_the_rest(
        cls: type[ColumnDetector], delay: int) -> None:
    first, false_rate = first_flags(cls(), series(cls.name))
    assert first is not None, f"{cls.name} missed its fault"
    assert first - FAULT_AT <= delay
    assert false_rate < 0.005


def test_bank_names_the_detector_that_drove_a_flag() -> None:
    bank = TagBank()
    bank.add_columns([f"t{i}" for i in range(N_TAGS)])
    x = series("stuck")
    found = []
    for row in x:
        found += [d for d in bank.detections(bank.step(row)) if d.subject == "t0"]
    assert found, "the stuck tag was not flagged"
    assert found[0].detector == "univariate:stuck"
    assert found[0].drivers[0][0] == "stuck"
    assert [s for _, s in found[0].drivers] == sorted((s for _, s in found[0].drivers),
                                                       reverse=True)


def test_bad_quality_values_are_neither_scored_nor_learned() -> None:
    bank = TagBank()
    bank.add_columns(["a"])
    rng = np.random.default_rng(1)
    for _ in range(100):
        bank.step(np.array([10 + rng.normal()]))
    wild = bank.step(np.array([1e9]), good=np.array([False]))
    assert np.isnan(wild.score[0])
    assert bank.step(np.array([10.0])).score[0] < 1
