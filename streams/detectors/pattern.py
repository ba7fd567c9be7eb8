"""A pattern-aware per-column detector: conformal k-nearest-neighbours on lagged windows.

:class:`KnnDetector` embeds each column's last ``dim`` values as a vector and scores it by
its mean distance to the ``k`` nearest vectors of a bounded training set of that column's
own normal past (the nonconformity of KNN-CAD, Burnaev & Ishimtsev 2016). A repeating
pattern (a daily cycle, a machine's work cycle) has near neighbours however far it swings;
a shape never seen before has none. The threshold is the base's conformal step: a high
quantile of the nonconformity of learned steps, so ``score > 1`` is as rare as the
quantile says. The training set is a fixed ``size x dim`` array per column. Its free
slots fill with normal windows; once full, ``replace="random"`` (the default) makes it a
biased reservoir: a window replaces a pseudo-random slot with probability
``max(size / n, size / horizon)``, so the set spans about ``horizon`` steps, the recent
past weighted most; ``replace="nearest"`` has each window replace its most similar stored
one, which keeps every part of a pattern covered but forgets nothing it does not revisit.

Only unflagged windows are learned, so the warm-up should span the longest repeating
pattern. A column that flags more than ``relearn`` of its recent steps (three times what
its 99% quantile threshold allows) stores its flagged windows all the same: its model is
stale (a new normal, a slow drift), and without this a shape first seen after the warm-up
would be flagged for ever.

Cost per column: ``8 * (size * dim + dim)`` bytes plus the 256-byte threshold sketch, and
``O(size * dim)`` per step, all columns in one NumPy operation.
"""

from __future__ import annotations

import logging

import numpy as np

from streams.detectors.base import B8, F64
from streams.detectors.columns import ColumnDetector

__all__ = ["KnnDetector"]

logger = logging.getLogger(__name__)

_PHI = 0.6180339887498949  # Weyl sequences: reproducible, uniform "random" slots
_PSI = 0.7548776662466927
_RATE = 0.01  # EWMA rate of the recent flag rate (about 100 steps)


class KnnDetector(ColumnDetector):
    """Mean L1 distance (per value) of the last ``dim`` values to their ``k`` nearest
    neighbours among ``size`` stored normal windows of the same column.

    Lifecycle as every :class:`ColumnDetector`: the lag buffer advances on every finite
    value (flagged ones included: it is the detection state); only learned steps enter the
    training set.
    """

    lags: F64
    train: F64
    filled: F64
    learned: F64
    novel: F64  # recent flag rate: EWMA of "flagged" over about 100 steps
    name = "knn"
    _ARRAYS = {"filled": 0.0, "learned": 0.0, "novel": 0.0}
    min_threshold = 0.0

    def __init__(self, dim: int = 8, k: int = 1, size: int = 128, horizon: int = 4000,
                 replace: str = "random", relearn: float = 0.03, warmup: int = 60,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 refresh: int = 10, max_gap: int = 1000) -> None:
        if replace not in ("nearest", "random"):
            raise ValueError(f"KnnDetector replace={replace!r}: use 'nearest' or 'random'")
        if dim < 1 or k < 1 or size < k or horizon < size:
            raise ValueError(f"KnnDetector needs dim >= 1, 1 <= k <= size <= horizon; got "
                             f"dim={dim}, k={k}, size={size}, horizon={horizon}")
        self.dim = dim
        self.k = k
        self.size = size
        self.horizon = horizon
        self.replace = replace
        self.relearn = relearn
        super().__init__(warmup, quantile, margin, history, refresh, max_gap)
        self.lags = np.full((0, dim), np.nan)  # the last dim values, oldest first
        self.train = np.full((0, size, dim), np.nan)

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "lags", "train")

    def _restored(self) -> None:
        super()._restored()
        n = len(self.columns)
        self.lags = self.lags.reshape(n, self.dim)
        self.train = self.train.reshape(n, self.size, self.dim)

    def add_columns(self, names: list[str]) -> None:
        before = len(self.columns)
        super().add_columns(names)
        k = len(self.columns) - before
        if k:
            self.lags = np.vstack([self.lags, np.full((k, self.dim), np.nan)])
            self.train = np.concatenate([self.train,
                                         np.full((k, self.size, self.dim), np.nan)])

    def reset(self, mask: B8) -> None:
        """A new operating point: forget the stored windows (and warm up again)."""
        super().reset(mask)
        self.train[mask] = np.nan
        self.lags[mask] = np.nan

    # -- the statistic ---------------------------------------------------------------------

    def _window(self, x: F64) -> F64:
        """The vectors ending at ``x``: shape (n_columns, dim); NaN rows until filled."""
        return np.concatenate([self.lags[:, 1:], x[:, None]], axis=1)

    def _raw(self, x: F64) -> F64:
        vec = self._window(x)
        dist = np.abs(self.train - vec[:, None, :]).mean(axis=2)  # (n, size)
        dist = np.where(np.isnan(dist), np.inf, dist)
        k = min(self.k, self.size)
        near = np.partition(dist, k - 1, axis=1)[:, :k].mean(axis=1)
        enough = (self.filled >= k) & np.isfinite(vec).all(axis=1)
        return np.where(enough & np.isfinite(near), near, np.nan)

    def _advance(self, x: F64, valid: B8) -> None:
        self.lags = np.where(valid[:, None], self._window(x), self.lags)

    def _fit(self, x: F64, fit: B8) -> None:
        # called after _advance: lags already end at x
        self.novel = np.where(fit, self.novel * (1.0 - _RATE), self.novel)
        self._store(fit)

    def _flagged(self, mask: B8) -> None:
        """Flagging more than ``relearn`` of recent steps means a stale model, not an
        incident: the flagged windows are stored too (the tag's new normal)."""
        self.novel = np.where(mask, self.novel + _RATE * (1.0 - self.novel), self.novel)
        persistent = mask & (self.novel > self.relearn)
        if persistent.any():
            self._store(persistent)

    def _store(self, mask: B8) -> None:
        """Put the current windows of the ``mask`` columns into their training sets."""
        ok = mask & np.isfinite(self.lags).all(axis=1)
        rows = np.flatnonzero(ok)
        if not len(rows):
            return
        n = self.learned[rows] + 1.0
        filled = self.filled[rows]
        free = filled < self.size
        vec = self.lags[rows]
        if self.replace == "nearest":  # the stored window most like this one makes way
            dist = np.abs(self.train[rows] - vec[:, None, :]).sum(axis=2)
            full_slot = np.argmin(np.where(np.isnan(dist), np.inf, dist), axis=1)
            take = np.ones(len(rows), dtype=bool)
        else:  # "random": a biased reservoir spanning about ``horizon`` steps
            u = (n * _PHI + rows * _PSI) % 1.0
            take = free | (u < np.maximum(self.size / n, self.size / self.horizon))
            full_slot = np.floor(((n * _PSI) % 1.0) * self.size).astype(np.int64)
        slot = np.where(free, filled.astype(np.int64), full_slot)
        r, s = rows[take], slot[take]
        self.train[r, s] = vec[take]
        self.filled[rows] = np.minimum(filled + 1.0, self.size)
        self.learned[rows] = n
