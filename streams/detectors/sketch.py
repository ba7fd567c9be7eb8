"""A fixed-size running quantile per column: the adaptive thresholds' memory.

Each column keeps a histogram of its non-negative statistic on ``BINS`` log-spaced bins
spanning ``SPAN`` (five decades) around an anchor, over a sliding window of about the last
``horizon`` values (``BLOCKS`` blocks, the oldest dropped whole), as a ring of that length
would, in one byte per bin and block instead of 8 bytes per value (256 bytes against 4,000
at the default 500). A quantile is read by walking the cumulative counts and interpolating
within its bin on the log scale: the relative error is below the bin ratio (1.2), a few per
cent on smooth tails (the relative-error bins of DDSketch, with blocks instead of merging).

The anchor starts at the column's first positive value and follows the quantile: a value
above the span moves the span up at once, and a quantile read more than a decade from the
anchor re-centres it, whole bins at a time (two decades down at a time when the quantile
fell below the span, whose bottom bin holds no sizes). Counts pushed off either end join
the end bins, which only the extreme quantiles read. So scores in units of a deviation and
distances in a tag's own units both sit mid-span.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BINS", "BLOCKS", "SPAN", "ScoreSketch"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

BINS = 64
BLOCKS = 4  # the sliding window moves a quarter of the horizon at a time
SPAN = (1e-2, 1e3)  # the first and last inner bin edges, relative to the anchor
RECENTRE = 10.0  # a quantile read this far from the anchor (either way) re-centres
TINY = 1e-250  # anchors stop moving down here


class ScoreSketch:
    """Per-row log-histograms over a sliding window of about ``horizon`` values: ``push``
    values, read ``weight`` and ``quantile``.

    The window is ``BLOCKS`` blocks of ``ceil(horizon / BLOCKS)`` values; when a row's
    current block is full, its oldest block is emptied and becomes the current one, so a
    row always reads between ``(BLOCKS - 1) / BLOCKS`` of the horizon and all of it.
    ``counts`` (rows x ``BLOCKS * BINS``, one byte a count), ``cur`` and ``filled`` (the
    current block and how full it is) and ``ref`` (the anchor per row, NaN until the first
    positive value) are the whole state.
    """

    def __init__(self, horizon: int, rows: int = 0) -> None:
        if horizon < 1:
            raise ValueError(f"score history horizon {horizon} must be at least 1 value")
        self.block = -(-horizon // BLOCKS)
        if self.block > 255:
            raise ValueError(f"score history horizon {horizon} is over {255 * BLOCKS} "
                             "values, more than the sketch's one-byte counts hold")
        self.counts = np.zeros((rows, BLOCKS * BINS), dtype=np.uint8)
        self.cur = np.zeros(rows, dtype=np.uint8)
        self.filled = np.zeros(rows, dtype=np.uint8)
        self.ref = np.full(rows, np.nan)
        # inner edges relative to the anchor: bin 0 is [0, e0), bin i is [e(i-1), e(i))
        self._edges = np.geomspace(SPAN[0], SPAN[1], BINS - 1)
        self._log_edges = np.log(self._edges)
        self._log_ratio = float(self._log_edges[1] - self._log_edges[0])

    def add_rows(self, k: int) -> None:
        self.counts = np.vstack([self.counts, np.zeros((k, BLOCKS * BINS), dtype=np.uint8)])
        self.cur = np.concatenate([self.cur, np.zeros(k, dtype=np.uint8)])
        self.filled = np.concatenate([self.filled, np.zeros(k, dtype=np.uint8)])
        self.ref = np.concatenate([self.ref, np.full(k, np.nan)])

    def push(self, rows: I64, values: F64) -> None:
        """One value (finite, >= 0) per row in ``rows`` (distinct rows)."""
        if not len(rows):
            return
        unset = np.isnan(self.ref[rows]) & (values > 0)
        if unset.any():
            self.ref[rows[unset]] = values[unset]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rel = np.nan_to_num(values / self.ref[rows], nan=0.0)  # no anchor: only 0s
        over = rel >= SPAN[1]
        if over.any():  # two decades of headroom above the new value
            shifts = np.ceil(np.log(rel[over] * 100.0 / SPAN[1]) / self._log_ratio)
            self._shift(rows[over], shifts.astype(np.int64))
            with np.errstate(over="ignore"):
                rel[over] = values[over] / self.ref[rows[over]]
        bins = np.searchsorted(self._edges, rel, side="right")
        self.counts[rows, self.cur[rows].astype(np.int64) * BINS + bins] += 1
        self.filled[rows] += 1
        full = rows[self.filled[rows] >= self.block]
        if len(full):  # the oldest block is emptied and becomes the current one
            self.cur[full] = (self.cur[full] + 1) % BLOCKS
            self.filled[full] = 0
            cols = self.cur[full].astype(np.int64)[:, None] * BINS + np.arange(BINS)
            self.counts[full[:, None], cols] = 0

    def _hist(self, rows: I64 | slice) -> npt.NDArray[np.int64]:
        """The window's histogram per row: the blocks summed."""
        return self.counts[rows].reshape(-1, BLOCKS, BINS).sum(axis=1, dtype=np.int64)

    def weight(self, rows: I64 | slice) -> F64:
        """How many values each row's window holds."""
        return self.counts[rows].sum(axis=1, dtype=np.int64).astype(np.float64)

    def quantile(self, rows: I64, q: float) -> F64:
        """The ``q`` quantile of each row (NaN for a row with no values); rows whose
        quantile sits more than ``RECENTRE`` times from their anchor are re-centred."""
        c = self._hist(rows).astype(np.float64)
        cum = np.cumsum(c, axis=1)
        total = cum[:, -1]
        target = q * total
        b = np.minimum((cum < target[:, None]).sum(axis=1), BINS - 1)
        idx = np.arange(len(b))
        inside = c[idx, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((target - (cum[idx, b] - inside)) / inside, 0.0, 1.0)
        frac = np.nan_to_num(frac, nan=1.0)
        rel = np.exp(self._log_edges[np.clip(b - 1, 0, BINS - 2)] + frac * self._log_ratio)
        rel = np.where(b == 0, frac * SPAN[0], rel)
        rel = np.where(b == BINS - 1, SPAN[1], rel)
        ref = np.nan_to_num(self.ref[rows], nan=0.0)  # no anchor: every value was 0
        out = np.where(total > 0, rel * ref, np.nan)
        # re-centre: on the quantile; below the span its size is unknown, so two decades
        # down at a time (a row of zeros stops at a tiny anchor)
        shift = np.round(np.log(np.maximum(rel, SPAN[0])) / self._log_ratio)
        shift = np.where(b == 0, -np.round(np.log(100.0) / self._log_ratio), shift)
        far = ((total > 0) & (self.ref[rows] > TINY)
               & ((rel > RECENTRE) | (rel < 1.0 / RECENTRE)))
        if far.any():
            self._shift(np.asarray(rows)[far], shift[far].astype(np.int64))
        return out

    def _shift(self, rows: I64, shifts: I64) -> None:
        """Move each row's anchor up (``s > 0``) or down by ``s`` whole bins, keeping its
        counts on their values; counts pushed past an end join the end bin."""
        for row, shift in zip(rows.tolist(), shifts.tolist(), strict=True):
            s = max(min(shift, BINS - 1), -(BINS - 1))  # past that, one end bin holds all
            if s == 0:
                continue
            old = self.counts[row].reshape(BLOCKS, BINS).astype(np.int64)
            new = np.zeros_like(old)
            if s > 0:
                new[:, 0] = old[:, : s + 1].sum(axis=1)
                new[:, 1: BINS - s] = old[:, s + 1:]
            else:
                t = -s
                new[:, 0] = old[:, 0]
                new[:, t + 1:] = old[:, 1: BINS - t]
                new[:, BINS - 1] += old[:, BINS - t:].sum(axis=1)
            self.counts[row] = new.reshape(-1)  # a block's sum fits: <= 255
            self.ref[row] *= float(np.exp(shift * self._log_ratio))
