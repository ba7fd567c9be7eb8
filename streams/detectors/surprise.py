"""From per-step scores to evidence and episodes, per column, vectorised.

:class:`Surprise` asks how unusual the recent scores are for this column: the short-term
mean of ``log1p(score)`` against the long-run distribution of that mean (a z value). A
column whose detectors fire often (a noisy tag) needs more to stand out; an isolated
blip in a quiet one is noticed; sustained evidence builds up. This is the "anomaly
likelihood" idea of Numenta's HTM detector, applied to our detectors' scores.

:class:`HoldOff` turns evidence into one event per incident: after a column triggers it
stays quiet for ``steps`` steps (the alarm layer's episodes generalise this).

Both keep plain NumPy arrays, so they pickle; ``state()``/``from_state()`` give a dict.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from streams.detectors.base import F64, MAX_SCORE

__all__ = ["HoldOff", "Surprise"]

logger = logging.getLogger(__name__)


class Surprise:
    """z of the short-term mean of ``log1p(score)`` against its long-run mean and spread.

    ``short`` and ``long`` are EWMA rates; no z for a column's first ``warmup`` scores.
    """

    def __init__(self, short: float = 0.1, long: float = 0.002, warmup: int = 100,
                 min_spread: float = 0.05) -> None:
        self.short = short
        self.long = long
        self.warmup = warmup
        self.min_spread = min_spread
        self.recent = np.zeros(0)
        self.mean = np.full(0, np.nan)
        self.var = np.zeros(0)
        self.count = np.zeros(0, dtype=np.int64)

    def _grow(self, n: int) -> None:
        k = n - len(self.recent)
        if k > 0:
            self.recent = np.concatenate([self.recent, np.zeros(k)])
            self.mean = np.concatenate([self.mean, np.full(k, np.nan)])
            self.var = np.concatenate([self.var, np.zeros(k)])
            self.count = np.concatenate([self.count, np.zeros(k, dtype=np.int64)])

    def update(self, score: F64) -> F64:
        """Fold one row of scores in (NaN = no score); the z per column (NaN if none)."""
        score = np.asarray(score, dtype=np.float64)
        self._grow(len(score))
        ok = np.isfinite(score)
        s = np.log1p(np.clip(np.nan_to_num(score), 0.0, MAX_SCORE))
        recent = np.where(ok, self.recent + self.short * (s - self.recent), self.recent)
        spread = np.sqrt(self.var) + self.min_spread
        z = np.where(ok & (self.count >= self.warmup), (recent - self.mean) / spread, np.nan)
        delta = recent - np.where(np.isnan(self.mean), recent, self.mean)
        self.mean = np.where(ok, np.where(np.isnan(self.mean), recent,
                                          self.mean + self.long * delta), self.mean)
        self.var = np.where(ok, (1 - self.long) * (self.var + self.long * delta * delta),
                            self.var)
        self.recent = recent
        self.count = self.count + ok
        return np.minimum(z, MAX_SCORE)

    def state(self) -> dict[str, Any]:
        return {"config": {"short": self.short, "long": self.long, "warmup": self.warmup,
                           "min_spread": self.min_spread},
                "recent": self.recent.tolist(), "mean": self.mean.tolist(),
                "var": self.var.tolist(), "count": self.count.tolist()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Surprise:
        out = cls(**d["config"])
        out.recent = np.asarray(d["recent"], dtype=np.float64)
        out.mean = np.asarray(d["mean"], dtype=np.float64)
        out.var = np.asarray(d["var"], dtype=np.float64)
        out.count = np.asarray(d["count"], dtype=np.int64)
        return out


class HoldOff:
    """After a column's value exceeds ``trigger``, report 0 for it for ``steps`` steps."""

    def __init__(self, steps: int = 100, trigger: float = 2.0) -> None:
        self.steps = steps
        self.trigger = trigger
        self.quiet = np.zeros(0, dtype=np.int64)  # steps left to stay quiet

    def apply(self, value: F64) -> F64:
        value = np.asarray(value, dtype=np.float64)
        if len(self.quiet) < len(value):
            self.quiet = np.concatenate(
                [self.quiet, np.zeros(len(value) - len(self.quiet), dtype=np.int64)])
        open_ = self.quiet == 0
        out = np.where(open_, np.nan_to_num(value, nan=0.0), 0.0)
        fired = open_ & (out > self.trigger)
        self.quiet = np.where(fired, self.steps, np.maximum(self.quiet - 1, 0))
        return out

    def state(self) -> dict[str, Any]:
        return {"config": {"steps": self.steps, "trigger": self.trigger},
                "quiet": self.quiet.tolist()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> HoldOff:
        out = cls(**d["config"])
        out.quiet = np.asarray(d["quiet"], dtype=np.int64)
        return out
