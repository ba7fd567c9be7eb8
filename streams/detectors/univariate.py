"""Univariate detectors per column, each one array operation per step for every tag.

- :class:`SpikeDetector`: one value far from the recent level, in units of the usual
  deviation.
- :class:`LevelShiftDetector`: a fast EWMA that has left the learned (slow) level.
- :class:`CusumDetector`: two-sided CUSUM of the standardised value: slow drifts.
- :class:`VarianceDetector`: the short-term step size against the learned one, either way
  (a noisier sensor, or a quieter one).
- :class:`StuckDetector`: a run of (nearly) unchanged values, long for this tag.

Scales are mean absolute deviations, not variances: they stay finite for inputs near the
float64 limit and a single outlier moves them less. Every scale has a floor relative to the
level, so a constant history scores rounding noise near 0 and a real change high. While a
column warms up (after a start or a re-baseline) its averages are plain running means
(rate ``max(alpha, 1 / (n + 1))``), and a deviation starts from the first residual it can
measure, not from 0: a scale underestimated at the start would score ordinary noise as
anomalous, and fill the adaptive threshold's history with those scores.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from streams.detectors.base import B8, F64
from streams.detectors.columns import ColumnDetector

__all__ = [
    "CusumDetector",
    "LevelShiftDetector",
    "SpikeDetector",
    "StuckDetector",
    "VarianceDetector",
]

logger = logging.getLogger(__name__)

REL_FLOOR = 1e-9  # scale floor relative to the level: below it, changes are rounding


def _floor(level: F64) -> F64:
    return REL_FLOOR * (1.0 + np.abs(np.nan_to_num(level)))


def _ewma(old: F64, x: F64, alpha: float | F64, mask: B8) -> F64:
    """Exponentially weighted mean, seeded by the first value, updated where ``mask``."""
    new = np.where(np.isnan(old), x, old + alpha * (x - old))
    return np.where(mask, new, old)


def _rate(alpha: float, n: npt.NDArray[np.int64]) -> F64:
    """``alpha``, or faster while fewer than ``1 / alpha`` values were learned."""
    return np.maximum(alpha, 1.0 / (n + 1.0))


class SpikeDetector(ColumnDetector):
    """``|x - level| / deviation``: a value far from the tag's recent level."""

    level: F64
    dev: F64
    name = "spike"
    _ARRAYS = {"level": np.nan, "dev": np.nan}
    min_threshold = 4.0

    def __init__(self, alpha: float = 0.3, warmup: int = 30, quantile: float = 0.99,
                 margin: float = 1.5, history: int = 500, refresh: int = 10,
                 max_gap: int = 1000) -> None:
        self.alpha = alpha
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)

    def _raw(self, x: F64) -> F64:
        return np.abs(x - self.level) / np.maximum(self.dev, _floor(self.level))

    def _fit(self, x: F64, fit: B8) -> None:
        resid = np.abs(x - self.level)  # NaN until there is a level
        self.dev = _ewma(self.dev, resid, _rate(self.alpha / 5, self.n_seen),
                         fit & np.isfinite(resid))
        self.level = _ewma(self.level, x, _rate(self.alpha, self.n_seen), fit)


class LevelShiftDetector(ColumnDetector):
    """``|fast EWMA - slow EWMA| / deviation``; the slow one learns only normal steps."""

    fast: F64
    slow: F64
    dev: F64
    name = "level_shift"
    _ARRAYS = {"fast": np.nan, "slow": np.nan, "dev": np.nan}
    min_threshold = 2.0
    CLIP = 10.0

    def __init__(self, fast_alpha: float = 0.3, slow_alpha: float = 0.02, warmup: int = 30,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 refresh: int = 10, max_gap: int = 1000) -> None:
        self.fast_alpha = fast_alpha
        self.slow_alpha = slow_alpha
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)

    def _fast(self, x: F64) -> F64:
        # winsorised at CLIP deviations: one wild value must not hold the EWMA away for long
        reach = self.CLIP * np.maximum(np.nan_to_num(self.dev), _floor(self.slow))
        clipped = np.where(np.isnan(self.slow), x,
                           np.clip(x, self.slow - reach, self.slow + reach))
        return _ewma(self.fast, clipped, self.fast_alpha, np.isfinite(x))

    def _raw(self, x: F64) -> F64:
        return np.abs(self._fast(x) - self.slow) / np.maximum(self.dev, _floor(self.slow))

    def _advance(self, x: F64, valid: B8) -> None:
        self.fast = np.where(valid, self._fast(x), self.fast)

    def _fit(self, x: F64, fit: B8) -> None:
        resid = np.abs(x - self.slow)
        rate = _rate(self.slow_alpha, self.n_seen)
        self.dev = _ewma(self.dev, resid, rate, fit & np.isfinite(resid))
        self.slow = _ewma(self.slow, x, rate, fit)


class CusumDetector(ColumnDetector):
    """Two-sided CUSUM of ``z = (x - mean) / sigma``, ``z`` clipped to +-``clip``.

    The sums advance on every value (they are the evidence of a drift) and restart after a
    flagged step, as a CUSUM chart does after it signals; the mean and sigma learn only
    normal steps. Clipping leaves single spikes to :class:`SpikeDetector`.
    """

    mean: F64
    dev: F64
    pos: F64
    neg: F64
    name = "cusum"
    _ARRAYS = {"mean": np.nan, "dev": np.nan, "pos": 0.0, "neg": 0.0}
    min_threshold = 5.0
    CAP = 1e6

    def __init__(self, k: float = 0.5, alpha: float = 0.02, clip: float = 4.0,
                 warmup: int = 30, quantile: float = 0.99, margin: float = 1.5,
                 history: int = 500, refresh: int = 10, max_gap: int = 1000) -> None:
        self.k = k
        self.alpha = alpha
        self.clip = clip
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)

    def _sums(self, x: F64) -> tuple[F64, F64]:
        sigma = 1.2533 * np.maximum(self.dev, _floor(self.mean))  # MAD -> sigma (normal)
        z = np.clip(np.nan_to_num((x - self.mean) / sigma), -self.clip, self.clip)
        pos = np.minimum(np.maximum(0.0, self.pos + z - self.k), self.CAP)
        neg = np.minimum(np.maximum(0.0, self.neg - z - self.k), self.CAP)
        return pos, neg

    def _raw(self, x: F64) -> F64:
        pos, neg = self._sums(x)
        return np.where(np.isnan(self.mean), np.nan, np.maximum(pos, neg))

    def _advance(self, x: F64, valid: B8) -> None:
        pos, neg = self._sums(x)
        ready = valid & ~np.isnan(self.mean)
        self.pos = np.where(ready, pos, self.pos)
        self.neg = np.where(ready, neg, self.neg)

    def _fit(self, x: F64, fit: B8) -> None:
        resid = np.abs(x - self.mean)
        rate = _rate(self.alpha, self.n_seen)
        self.dev = _ewma(self.dev, resid, rate, fit & np.isfinite(resid))
        self.mean = _ewma(self.mean, x, rate, fit)

    def _flagged(self, mask: B8) -> None:
        self.pos = np.where(mask, 0.0, self.pos)
        self.neg = np.where(mask, 0.0, self.neg)


class VarianceDetector(ColumnDetector):
    """``|log(short-term step size / learned step size)|``: noisier or quieter than usual."""

    prev: F64
    fast: F64
    slow: F64
    name = "variance"
    _ARRAYS = {"prev": np.nan, "fast": np.nan, "slow": np.nan}
    min_threshold = float(np.log(3.0))
    CLIP = 10.0  # steps are winsorised at 10x the usual: one jump is not a noisier sensor

    def __init__(self, fast_alpha: float = 0.1, slow_alpha: float = 0.01, warmup: int = 30,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 refresh: int = 10, max_gap: int = 1000) -> None:
        self.fast_alpha = fast_alpha
        self.slow_alpha = slow_alpha
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)

    def _fast(self, x: F64) -> F64:
        step = np.abs(x - self.prev)
        step = np.where(self.slow > 0, np.minimum(step, self.CLIP * self.slow), step)
        return _ewma(self.fast, step, self.fast_alpha, np.isfinite(step))

    def _raw(self, x: F64) -> F64:
        floor = _floor(self.prev)
        return np.abs(np.log((self._fast(x) + floor) / (self.slow + floor)))

    def _advance(self, x: F64, valid: B8) -> None:
        self.fast = np.where(valid, self._fast(x), self.fast)
        self.prev = np.where(valid, x, self.prev)

    def _fit(self, x: F64, fit: B8) -> None:
        self.slow = _ewma(self.slow, self.fast, _rate(self.slow_alpha, self.n_seen),
                          fit & ~np.isnan(self.fast))


class StuckDetector(ColumnDetector):
    """Length of the current run of steps smaller than ``tolerance`` x the usual step.

    A flatlined sensor repeats one value (or wanders by far less than it used to); the
    threshold comes from the run lengths the tag shows normally.
    """

    prev: F64
    run: F64
    step: F64
    name = "stuck"
    _ARRAYS = {"prev": np.nan, "run": 0.0, "step": np.nan}
    min_threshold = 5.0

    def __init__(self, tolerance: float = 0.01, alpha: float = 0.02, warmup: int = 30,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 refresh: int = 10, max_gap: int = 1000) -> None:
        self.tolerance = tolerance
        self.alpha = alpha
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)

    def _run(self, x: F64) -> F64:
        step = np.abs(x - self.prev)
        still = step <= self.tolerance * np.nan_to_num(self.step) + _floor(self.prev)
        return np.where(still, self.run + 1.0, 0.0)

    def _raw(self, x: F64) -> F64:
        return np.where(np.isnan(self.prev) | np.isnan(self.step), np.nan, self._run(x))

    def _advance(self, x: F64, valid: B8) -> None:
        self.run = np.where(valid, self._run(x), self.run)

    def _fit(self, x: F64, fit: B8) -> None:
        raw_step = np.abs(x - self.prev)
        moved = fit & np.isfinite(raw_step) & (self.run == 0)
        # winsorised: one wild jump must not make every later step look "still"
        step: F64 = np.where(np.isnan(self.step), raw_step,
                             np.minimum(raw_step, 4.0 * self.step))
        self.step = _ewma(self.step, step, _rate(self.alpha, self.n_seen), moved)
        self.prev = np.where(np.isfinite(x), x, self.prev)
