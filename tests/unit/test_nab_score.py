"""The NAB scorer on hand-made cases whose scores follow from NAB's rules by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from millstream.bench.nab_score import (
    FileLabels,
    Profile,
    probation_length,
    scaled_sigmoid,
    score_profile,
    window_rule_mismatches,
)

STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
LOW_FP = Profile("reward_low_fp", tp=1.0, fp=0.22, fn=1.0)
LOW_FN = Profile("reward_low_fn", tp=1.0, fp=0.11, fn=2.0)
PROFILES = [STANDARD, LOW_FP, LOW_FN]

# 1000 rows: probation is rows 0..149; one window of 100 rows
ONE = FileLabels("one.csv", 1000, ((500, 599),))


def flags(n: int, *rows: int) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def tp_weight(row: int, lo: int, hi: int) -> float:
    """By hand: NAB's position -(hi - row + 1)/width, sigmoid 2/(1+e^(5p)) - 1, scaled."""
    width = hi - lo + 1
    pos = -(hi - row + 1) / width
    return (2 / (1 + math.exp(5 * pos)) - 1) / (2 / (1 + math.exp(-5)) - 1)


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_scaled_sigmoid_shape() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(0.5) < 0 and scaled_sigmoid(3.5) == -1.0


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_perfect_detector_scores_100_and_null_scores_0(profile: Profile) -> None:
    two = FileLabels("two.csv", 2000, ((400, 499), (1500, 1599)))
    files = [ONE, two]
    perfect = score_profile(files, [flags(1000, 500), flags(2000, 400, 1500)], profile)
    assert perfect.score == pytest.approx(100.0)
    assert (perfect.tp, perfect.fp, perfect.fn) == (3, 0, 0)
    null = score_profile(files, [np.zeros(1000), np.zeros(2000)], profile)
    assert null.score == pytest.approx(0.0)
    assert null.raw == pytest.approx(-3 * profile.fn)
    assert null.perfect == pytest.approx(3 * profile.tp)


def test_early_detection_beats_late_detection() -> None:
    early = score_profile([ONE], [flags(1000, 510)], STANDARD)
    middle = score_profile([ONE], [flags(1000, 550)], STANDARD)
    late = score_profile([ONE], [flags(1000, 599)], STANDARD)
    assert early.score > middle.score > late.score > 0
    # null -1, perfect +1: normalised = 50 * (weight + 1)
    assert middle.score == pytest.approx(50 * (tp_weight(550, 500, 599) + 1))
    assert late.score == pytest.approx(50 * (tp_weight(599, 500, 599) + 1))


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    both = score_profile([ONE], [flags(1000, 550, 520, 590)], STANDARD)
    alone = score_profile([ONE], [flags(1000, 520)], STANDARD)
    assert both.score == pytest.approx(alone.score)
    assert both.fp == 0


@pytest.mark.parametrize(("profile", "expected"), [
    (STANDARD, 100 * (1 - 0.11 + 1) / 2),
    (LOW_FP, 100 * (1 - 0.22 + 1) / 2),
    (LOW_FN, 100 * (1 - 0.11 + 2) / 3),
], ids=lambda p: getattr(p, "name", ""))
def test_a_false_positive_before_the_window_costs_the_profile_fp_weight(
        profile: Profile, expected: float) -> None:
    result = score_profile([ONE], [flags(1000, 200, 500)], profile)
    assert result.score == pytest.approx(expected)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)


def test_a_false_positive_just_after_a_window_costs_less_than_a_late_one() -> None:
    just_after = score_profile([ONE], [flags(1000, 500, 605)], STANDARD)
    far_after = score_profile([ONE], [flags(1000, 500, 950)], STANDARD)
    # 605 is 6/99 windows past the end; 950 is past 3 widths: full FP weight
    past = 6 / 99
    assert just_after.raw == pytest.approx(1 + 0.11 * (2 / (1 + math.exp(5 * past)) - 1))
    assert far_after.raw == pytest.approx(1 - 0.11)
    assert 100 > just_after.score > far_after.score


def test_probation_rows_are_not_scored() -> None:
    result = score_profile([ONE], [flags(1000, 20, 100, 500)], STANDARD)
    assert result.score == pytest.approx(100.0)
    assert result.fp == 0


def test_threshold_is_tuned_to_keep_detections_that_pay() -> None:
    s = np.zeros(1000)
    s[500] = 0.9
    s[[200, 300, 700]] = 0.5  # false positives, all scoring below the true positive
    result = score_profile([ONE], [s], STANDARD)
    assert result.threshold == pytest.approx(0.9)
    assert result.score == pytest.approx(100.0)
    # with the FPs scoring highest, flagging them too still pays (1 - 3 * 0.11 > -1)
    s[[200, 300, 700]] = 1.0
    flooded = score_profile([ONE], [s], STANDARD)
    assert flooded.threshold == pytest.approx(0.9)
    assert flooded.fp == 3


def test_a_window_inside_probation_is_not_counted() -> None:
    labels = FileLabels("early.csv", 1000, ((10, 60), (500, 599)))
    result = score_profile([labels], [flags(1000, 500)], STANDARD)
    assert result.score == pytest.approx(100.0)
    assert result.null == pytest.approx(-1.0)


def test_nan_scores_never_detect_and_lengths_must_match() -> None:
    s = np.full(1000, np.nan)
    s[500] = 1.0
    assert score_profile([ONE], [s], STANDARD).score == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"one\.csv"):
        score_profile([ONE], [np.zeros(999)], STANDARD)


def test_window_rule_mismatches_reports_only_off_rule_windows() -> None:
    labels = FileLabels("rule.csv", 4000, ((1000, 1199), (3000, 3099)))
    # 10% of 4000 rows over 2 labels: 200 rows per window
    assert window_rule_mismatches(labels, n_labels=2) == [(3000, 3099, 200)]
