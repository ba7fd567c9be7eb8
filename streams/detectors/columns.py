"""Per-column detectors vectorised with NumPy: one array operation per step for all tags.

:class:`ColumnDetector` owns what every univariate detector shares: the column index
(columns appear as tags do), the warm-up, the adaptive threshold (a high running quantile
of the detector's own statistic over about the last ``history`` steps it learned, kept in a
fixed-size :class:`~streams.detectors.sketch.ScoreSketch`, times a margin, wider while
that history is short, never below a floor) and the guard that a non-finite input or
update never reaches the state. A subclass gives the statistic (``_raw``), the detection
state that advances on every valid step (``_advance``: run lengths, CUSUM sums, the
previous value) and the model that learns only from normal steps (``_fit``).

Lifecycle: ``det.add_columns(names)`` (or let dicts add them); per step
``s = det.score_many(x)`` then ``det.learn_many(x)`` (or ``learn=`` a caller's mask).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from streams.detectors.base import B8, F64, MAX_SCORE, D, Detector, finite_or_nan
from streams.detectors.sketch import BINS, BLOCKS, ScoreSketch

__all__ = ["ColumnDetector", "small_sample"]

logger = logging.getLogger(__name__)


def small_sample(n: npt.NDArray[np.int64] | F64 | float) -> F64:
    """How much wider a threshold from ``n`` values of history is made: the high quantile
    of a few values is about their maximum, below the true one (x2 at 10 values, x1.1 at
    100, x1.02 at 500)."""
    return 1.0 + 10.0 / np.maximum(np.asarray(n, dtype=np.float64), 1.0)


class ColumnDetector(Detector):
    """Base of the per-column detectors; ``score > 1`` is anomalous, NaN is no score."""

    # per-column arrays of the subclass and their initial values
    _ARRAYS: ClassVar[dict[str, float]] = {}
    # the statistic's threshold never goes below this (noise-free history)
    min_threshold: ClassVar[float] = 1.0
    _BASE_STATE: ClassVar[tuple[str, ...]] = (
        "columns", "n_seen", "hist_counts", "hist_cur", "hist_filled", "hist_ref", "thr",
        "steps", "last_seen")

    def __init__(self, warmup: int = 30, quantile: float = 0.99, margin: float = 1.5,
                 history: int = 500, refresh: int = 10, max_gap: int = 1000) -> None:
        self.warmup = warmup
        self.max_gap = max_gap
        self.quantile = quantile
        self.margin = margin
        self.history = history
        self.refresh = refresh
        self.columns: list[str] = []
        self._index: dict[str, int] = {}
        self.n_seen = np.zeros(0, dtype=np.int64)  # steps learned since the (re)start
        self.hist = ScoreSketch(history)  # the statistic on learned steps
        self.thr = np.full(0, np.nan)
        self.steps = 0
        self.last_seen = np.zeros(0, dtype=np.int64)  # step of the last value, -1 never
        for name, init in self._ARRAYS.items():
            setattr(self, name, np.full(0, init))

    def _state_keys(self) -> tuple[str, ...]:
        return self._BASE_STATE + tuple(self._ARRAYS)

    # the score history's arrays, under the names the state carries
    hist_counts = property(lambda self: self.hist.counts,
                           lambda self, v: setattr(self.hist, "counts", v))
    hist_cur = property(lambda self: self.hist.cur, lambda self, v: setattr(self.hist, "cur", v))
    hist_filled = property(lambda self: self.hist.filled,
                           lambda self, v: setattr(self.hist, "filled", v))
    hist_ref = property(lambda self: self.hist.ref, lambda self, v: setattr(self.hist, "ref", v))

    def _restored(self) -> None:
        self._index = {c: i for i, c in enumerate(self.columns)}
        if not self.hist.counts.size:  # a state without a sketch (saved before it)
            self.hist = ScoreSketch(self.history, len(self.columns))
        self.hist.counts = self.hist.counts.reshape(len(self.columns), BLOCKS * BINS)

    @classmethod
    def from_state(cls: type[D], d: dict[str, Any]) -> D:
        """As :meth:`Detector.from_state`; a state saved with the score history as a ring
        of values (``hist``, ``hist_pos``: before the sketch) is read too."""
        state = dict(d["state"])
        ring, pos = state.pop("hist", None), state.pop("hist_pos", None)
        det = super().from_state({**d, "state": state})
        if ring is not None and pos is not None and isinstance(det, ColumnDetector):
            det._replay_ring(np.asarray(ring, dtype=np.float64),
                             np.asarray(pos, dtype=np.int64))
        return det

    def _replay_ring(self, ring: F64, pos: npt.NDArray[np.int64]) -> None:
        """Push a saved ring's values, oldest first, into the fresh sketch."""
        n = len(self.columns)
        ring = ring.reshape(n, -1)
        rows = np.arange(n)
        for k in range(ring.shape[1]):
            values = ring[rows, (pos + k) % ring.shape[1]]
            ok = np.isfinite(values)
            self.hist.push(rows[ok], values[ok])

    # -- columns ---------------------------------------------------------------------------

    def add_columns(self, names: list[str]) -> None:
        """Start tracking these columns (names already tracked are ignored)."""
        new = [n for n in names if n not in self._index]
        if not new:
            return
        k = len(new)
        for n in new:
            self._index[n] = len(self.columns)
            self.columns.append(n)
        self.n_seen = np.concatenate([self.n_seen, np.zeros(k, dtype=np.int64)])
        self.hist.add_rows(k)
        self.thr = np.concatenate([self.thr, np.full(k, np.nan)])
        self.last_seen = np.concatenate([self.last_seen, np.full(k, -1, dtype=np.int64)])
        for name, init in self._ARRAYS.items():
            setattr(self, name, np.concatenate([getattr(self, name), np.full(k, init)]))

    def _row(self, x: dict[str, float]) -> F64:
        self.add_columns(list(x))
        row = np.full(len(self.columns), np.nan)
        for name, value in x.items():
            try:
                row[self._index[name]] = float(value)
            except (TypeError, ValueError):
                logger.debug("%s: column %s value %r is not a number: no score",
                             self.name, name, value)
        return row

    def reset(self, mask: B8) -> None:
        """Forget the model of these columns (a new operating point): warm up again.

        The statistic's history, and so its threshold, is kept: how the tag varies
        rarely changes with its level.
        """
        self.n_seen[mask] = 0
        for name, init in self._ARRAYS.items():
            getattr(self, name)[mask] = init

    # -- the contract, vectorised ----------------------------------------------------------

    def score_many(self, x: F64) -> F64:
        """Score one value per column (NaN = missing): statistic / threshold, NaN if none."""
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            raw = self._raw(x)
            score = raw / self.thr
        fresh = self.steps - self.last_seen <= self.max_gap
        ready = ((self.n_seen >= self.warmup) & np.isfinite(x) & np.isfinite(self.thr)
                 & fresh)
        return finite_or_nan(np.where(ready & ~np.isnan(score), score, np.nan))

    def learn_many(self, x: F64, learn: B8 | None = None) -> None:
        """Advance the detection state on every finite value; fit the model where ``learn``.

        ``learn=None`` gates on the detector's own flags (river's ``learn_one`` after
        ``score_one``); a combining caller passes its own "not flagged" mask. A column
        silent for more than ``max_gap`` steps starts again, warm-up included: its model
        is stale.
        """
        x = np.asarray(x, dtype=np.float64)
        valid = np.isfinite(x)
        stale = valid & (self.steps - self.last_seen > self.max_gap) & (self.last_seen >= 0)
        if stale.any():
            self.reset(stale)
        if learn is None:
            learn = ~(self.score_many(x) > 1.0)
        fit = valid & np.asarray(learn, dtype=bool)
        with np.errstate(all="ignore"):
            raw = self._raw(x)
            self._advance(x, valid)
            self._fit_guarded(x, fit)
            self._flagged(valid & ~fit)
        self._push(raw, fit & (self.n_seen > self.warmup // 2))
        self.n_seen[fit] += 1
        self.last_seen[valid] = self.steps
        self.steps += 1
        if self.steps % self.refresh == 0 or self.steps <= self.warmup:
            self._refresh_threshold()
        else:  # columns still without a threshold get theirs as soon as they can
            pending = np.isnan(self.thr)
            if pending.any():
                self._refresh_threshold(pending)

    def _fit_guarded(self, x: F64, fit: B8) -> None:
        """Fit, then undo it on columns whose state stopped being finite (1e300 inputs)."""
        saved = {n: getattr(self, n).copy() for n in self._ARRAYS}
        self._fit(x, fit)
        bad = np.zeros(len(x), dtype=bool)
        for n in self._ARRAYS:
            bad |= ~np.isfinite(getattr(self, n)) & np.isfinite(saved[n])
        if bad.any():
            logger.debug("%s: update of %d column(s) overflowed; not learned",
                         self.name, int(bad.sum()))
            for n in self._ARRAYS:
                getattr(self, n)[bad] = saved[n][bad]
            fit &= ~bad

    def _push(self, raw: F64, mask: B8) -> None:
        rows = np.flatnonzero(mask & np.isfinite(raw))
        self.hist.push(rows, np.minimum(raw[rows], MAX_SCORE))

    def _refresh_threshold(self, only: B8 | None = None) -> None:
        count = np.zeros(len(self.columns))
        rows = np.flatnonzero(only) if only is not None else slice(None)
        count[rows] = self.hist.weight(rows)
        enough = np.flatnonzero(count >= min(self.warmup, 10) - 0.5)  # decay: 9.98 is 10
        if not len(enough):
            return
        q = self.hist.quantile(enough, self.quantile)
        margin = self.margin * small_sample(count[enough])
        self.thr[enough] = np.maximum(q * margin, self.min_threshold)

    # -- river's contract on dicts ---------------------------------------------------------

    def score_one(self, x: dict[str, float]) -> float:
        """The highest column score of ``x`` (NaN if none has one)."""
        scores = self.score_many(self._row(x))
        return float(np.nanmax(scores)) if np.isfinite(scores).any() else float("nan")

    def learn_one(self, x: dict[str, float]) -> None:
        self.learn_many(self._row(x))

    def explain(self, x: dict[str, float]) -> list[tuple[str, float]]:
        scores = self.score_many(self._row(x))
        ranked = sorted(((c, float(s)) for c, s in zip(self.columns, scores, strict=True)
                         if np.isfinite(s) and c in x), key=lambda cs: -cs[1])
        return [cs for cs in ranked if cs[1] > 1.0] or ranked[:1]

    # -- what a subclass gives -------------------------------------------------------------

    def _raw(self, x: F64) -> F64:
        """The statistic of ``x`` against the current state (NaN where undefined)."""
        raise NotImplementedError

    def _advance(self, x: F64, valid: B8) -> None:
        """Update the detection state (not the model) on every valid value."""

    def _fit(self, x: F64, fit: B8) -> None:
        """Learn ``x`` into the model where ``fit``."""
        raise NotImplementedError

    def _flagged(self, mask: B8) -> None:
        """Hook: these columns had a value but were not learned (flagged)."""
