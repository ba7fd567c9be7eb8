"""Control limits and capability computed by hand, and their invariants (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.spc.capability import Shift, ShiftTally, capability
from streams.spc.constants import constants
from streams.spc.limits import Baseline, individuals_limits, xbar_r_limits


def test_individuals_limits_by_hand() -> None:
    # values 10 12 11 13 12: mean 58/5 = 11.6; moving ranges 2 1 2 1, MRbar = 1.5;
    # sigma = 1.5 / 1.128 = 1.32979; limits 11.6 +- 3 * 1.32979 = 7.61064 .. 15.58936;
    # MR chart UCL = 3.267 * 1.5 = 4.9005
    lim = individuals_limits([10, 12, 11, 13, 12])
    assert lim is not None
    assert lim.centre == pytest.approx(11.6)
    assert lim.sigma == pytest.approx(1.329787, rel=1e-6)
    assert (lim.lcl, lim.ucl) == (pytest.approx(7.610638, rel=1e-6),
                                  pytest.approx(15.589362, rel=1e-6))
    assert (lim.range_lcl, lim.range_ucl) == (0.0, pytest.approx(4.9005))


def test_xbar_r_limits_by_hand() -> None:
    # subgroups of 3: means 2, 4, 3 -> grand mean 3; ranges 2, 4, 0 -> Rbar 2;
    # A2(3) = 1.023: limits 3 +- 2.046 = 0.954 .. 5.046; D4(3) = 2.574: R UCL 5.148, D3 = 0;
    # sigma = Rbar / d2(3) = 2 / 1.693 = 1.18133
    lim = xbar_r_limits([[1, 2, 3], [2, 4, 6], [3, 3, 3]])
    assert lim is not None
    assert lim.centre == pytest.approx(3.0)
    assert (lim.lcl, lim.ucl) == (pytest.approx(0.954), pytest.approx(5.046))
    assert (lim.range_lcl, lim.range_ucl) == (0.0, pytest.approx(5.148))
    assert lim.sigma == pytest.approx(1.181335, rel=1e-6)


def test_an_out_of_control_baseline_point_is_dropped_and_the_limits_computed_again() -> None:
    # 10 11 10 11 ... with a 30 in place of the tenth value. Trial limits: centre 229/20
    # = 11.45, MRbar 56/19 = 2.947, so 3.61 .. 19.29: 30 is out (the 11 after it has a
    # moving range of 19, above the MR chart's 9.63, only because of the 30). Without the
    # 30 and the two moving ranges it spans: centre 199/19, MRbar 1, sigma 1/1.128
    values = [10.0, 11.0] * 10
    values[9] = 30.0
    lim = individuals_limits(values)
    assert lim is not None
    assert (lim.points, lim.dropped) == (19, 1)
    assert lim.centre == pytest.approx(199 / 19)
    assert lim.range_centre == pytest.approx(1.0)
    assert lim.sigma == pytest.approx(1 / 1.128, rel=1e-3)
    assert individuals_limits([10.0, 11.0] * 10).dropped == 0  # type: ignore[union-attr]


def test_a_subgroup_with_an_outlying_range_is_dropped() -> None:
    groups = [[10.0, 11.0, 12.0]] * 9 + [[5.0, 11.0, 17.0]]  # ranges 2 x9 and 12
    lim = xbar_r_limits(groups)
    assert lim is not None and (lim.points, lim.dropped) == (9, 1)
    assert lim.range_centre == pytest.approx(2.0)


def test_never_fewer_than_half_the_baseline_is_kept_and_old_states_start_again() -> None:
    b = Baseline("individuals", 1, 4)
    for v, r in [(1.0, None), (100.0, 99.0), (1.0, 99.0), (100.0, 99.0)]:
        b.add(v, r)
    lim = b.limits()
    assert lim is not None and lim.points >= 2
    b.load({"count": 3, "total": 3.0, "spread_sum": 2.0, "spread_count": 2})  # sums only
    assert b.count == 0 and b.limits() is None
    b.load(Baseline("individuals", 1, 4).to_dict() | {"values": [[1.0, None], [2.0, 1.0]]})
    assert b.count == 2


def test_xbar_r_range_chart_lcl_from_d3() -> None:
    # n = 7: D3 = 0.076, D4 = 1.924; two subgroups with ranges 6 and 4: Rbar 5
    lim = xbar_r_limits([[1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 5, 4]])
    assert lim is not None
    assert (lim.range_lcl, lim.range_ucl) == (pytest.approx(0.38), pytest.approx(9.62))


def test_constants_cover_two_to_ten_only() -> None:
    assert constants(2).d2 == 1.128 and constants(10).a2 == 0.308
    with pytest.raises(ValueError, match=r"subgroup size 11 .* use 2 to 10"):
        constants(11)


def test_no_spread_gives_no_limits() -> None:
    assert individuals_limits([5.0] * 10) is None
    assert xbar_r_limits([[1.0, 1.0], [2.0, 2.0]]) is None


def test_capability_by_hand_both_limits() -> None:
    # values 9 11 10 12 8 10: mean 10; moving ranges 2 1 2 4 2 -> MRbar 2.2;
    # sigma = 2.2 / 1.128 = 1.950355; LSL 4, USL 19:
    # Cp = 15 / (6 * 1.950355) = 1.281818; Cpu = 9 / 5.851064 = 1.538182;
    # Cpl = 6 / 5.851064 = 1.025455; Cpk = min = 1.025455
    t = ShiftTally(Shift("day", 0, 1), 1)
    for v in (9, 11, 10, 12, 8, 10):
        t.add_value(v)
    r = t.result(4.0, 19.0, min_points=5)
    assert r.points == 6 and r.mean == pytest.approx(10.0)
    assert r.sigma_within == pytest.approx(1.950355, rel=1e-6)
    assert r.cp == pytest.approx(1.281818, rel=1e-6)
    assert r.cpu == pytest.approx(1.538182, rel=1e-6)
    assert r.cpk == r.cpl == pytest.approx(1.025455, rel=1e-6)
    assert r.note == ""


def test_one_sided_capability_says_so() -> None:
    r = capability(40, 10.0, 2.0, None, 16.0, min_points=30)
    assert r.cp is None and r.cpl is None
    assert r.cpk == r.cpu == pytest.approx(1.0)  # (16 - 10) / 6
    assert "only USL" in r.note and "Cp undefined" in r.note
    r = capability(40, 10.0, 2.0, 7.0, None, min_points=30)
    assert r.cp is None and r.cpk == r.cpl == pytest.approx(0.5)
    assert "only LSL" in r.note


def test_too_few_points_and_no_variation_report_instead_of_a_number() -> None:
    r = capability(12, 10.0, 2.0, 4.0, 16.0, min_points=30)
    assert (r.cp, r.cpk) == (None, None)
    assert r.note == "too few points: 12 in the shift, Cp/Cpk need at least 30"
    r = capability(40, 10.0, 0.0, 4.0, 16.0, min_points=30)
    assert (r.cp, r.cpk) == (None, None) and "sigma within is 0" in r.note
    r = capability(40, 10.0, 1.0, None, None, min_points=30)
    assert (r.cp, r.cpk) == (None, None) and "no specification limits" in r.note


def test_xbar_r_capability_uses_rbar_over_d2() -> None:
    t = ShiftTally(Shift("day", 0, 1), 5)
    for mean, rng in ((10.0, 2.0), (10.5, 3.0), (9.5, 1.0)):
        t.add_subgroup(mean, rng)
    assert t.sigma_within == pytest.approx(2.0 / 2.326)
    assert "Rbar/d2 (n=5" in t.sigma_method


# -- properties ----------------------------------------------------------------------------
_values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=60)
_shift = st.floats(-1e4, 1e4, allow_nan=False)
_scale = st.floats(1e-3, 1e3, allow_nan=False)


def _close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6 * scale)


@given(_values, _shift)
def test_individuals_limits_move_with_a_constant(xs: list[float], c: float) -> None:
    a, b = individuals_limits(xs), individuals_limits([x + c for x in xs])
    if a is None or b is None:
        return
    scale = max(abs(c), *map(abs, xs), 1.0)
    assert _close(b.centre, a.centre + c, scale)
    assert _close(b.sigma, a.sigma, scale)
    assert _close(b.ucl - b.lcl, a.ucl - a.lcl, scale)


@given(_values, _scale)
def test_individuals_limits_scale_with_the_data(xs: list[float], k: float) -> None:
    a, b = individuals_limits(xs), individuals_limits([x * k for x in xs])
    if a is None or b is None:
        return
    scale = max(*map(abs, xs), 1.0) * k
    assert _close(b.centre, a.centre * k, scale)
    assert _close(b.sigma, a.sigma * k, scale)
    assert _close(b.ucl, a.ucl * k, scale)


@given(st.integers(2, 10), st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=20,
                                     max_size=100), _shift, _scale)
def test_xbar_r_limits_shift_and_scale(n: int, xs: list[float], c: float, k: float) -> None:
    groups = [xs[i:i + n] for i in range(0, len(xs) - n + 1, n)]
    a = xbar_r_limits(groups)
    b = xbar_r_limits([[x * k + c for x in g] for g in groups])
    if a is None or b is None:
        return
    scale = (max(*map(abs, xs), 1.0) * k) + abs(c)
    assert _close(b.centre, a.centre * k + c, scale)
    assert _close(b.ucl - b.lcl, (a.ucl - a.lcl) * k, scale)
    assert _close(b.range_ucl, a.range_ucl * k, scale)


@given(st.floats(-1e3, 1e3, allow_nan=False), st.floats(1e-3, 1e3, allow_nan=False),
       st.floats(-1e3, 1e3, allow_nan=False), st.floats(1e-3, 1e3, allow_nan=False))
def test_cpk_never_exceeds_cp(mean: float, sigma: float, lsl: float, width: float) -> None:
    r = capability(50, mean, sigma, lsl, lsl + width, min_points=30)
    assert r.cp is not None and r.cpk is not None
    assert r.cpk <= r.cp + 1e-12 * max(1.0, abs(r.cp))
