"""The Numenta Anomaly Benchmark's scoring rules, written from NAB's published description.

Each file has labelled anomaly windows (row ranges). The first 15% of a file (at most 750
rows) is probation and not scored. A detection inside a window is a true positive weighted
by a scaled sigmoid of its position (earliest = full ``tp`` weight, window end ~0); only
the earliest detection of a window counts. A detection outside every window is a false
positive costing ``fp`` weight: the full weight before the first window, and after a window
the sigmoid of its distance past that window (so a detection just late costs little). A
window with no detection costs ``fn``. The detection threshold is chosen per profile to
maximise the total over all files, and the total is normalised
``100 * (raw - null) / (perfect - null)``: the detector that flags nothing scores 0, the
one that flags the first scored row of every window scores 100.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILE_NAMES",
    "FileLabels",
    "Profile",
    "ProfileScore",
    "probation_length",
    "row_weights",
    "scaled_sigmoid",
    "score_profile",
    "window_rule_mismatches",
]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# profiles.json's names -> the names of the bench's JSON result
PROFILE_NAMES = {"standard": "standard", "reward_low_FP_rate": "reward_low_fp",
                 "reward_low_FN_rate": "reward_low_fn"}


@dataclass(frozen=True)
class Profile:
    """The weights of one NAB application profile (its cost matrix)."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class FileLabels:
    """One data file: its length and its anomaly windows as inclusive row ranges."""

    name: str
    n_rows: int
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ProfileScore:
    """A profile's result: the normalised score and what it was made of."""

    profile: str
    score: float  # normalised: null detector 0, perfect detector 100
    raw: float
    null: float
    perfect: float
    threshold: float  # the anomaly-score threshold that maximised ``raw``
    tp: int  # windows detected at that threshold
    fp: int  # detections outside every window
    fn: int  # windows missed


def probation_length(n_rows: int, fraction: float = 0.15, cap: int = 750) -> int:
    """Rows at the start of a file that are not scored: 15% of it, at most 750."""
    return min(math.floor(fraction * n_rows), cap)


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a detection at ``position`` relative to a window.

    ``-1`` is the window's first row, ``0`` its end; positive values are window lengths
    past its end. ``2 * sigmoid(-5 * position) - 1``, and ``-1`` beyond 3 lengths past.
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def row_weights(labels: FileLabels, profile: Profile) -> tuple[I64, F64, I64]:
    """The scored rows of one file, what a detection at each is worth, and its window.

    Returns ``(rows, weight, window)``: ``window`` is the index of the window the row lies
    in (-1 outside every window). A window row's weight is its TP value; another row's is
    its (negative) FP cost.
    """
    n = labels.n_rows
    weight = np.empty(n)
    window = np.full(n, -1, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_end: int | None = None
    prev_width = 0.0
    cursor = 0
    for w, (lo, hi) in enumerate(sorted(labels.windows)):
        if not 0 <= lo <= hi < n:
            raise ValueError(f"window {w} of {labels.name} is rows {lo}..{hi}, outside 0..{n - 1};"
                             " fix the labels file")
        _fill_outside(weight, cursor, lo, prev_end, prev_width, profile)
        width = float(hi - lo + 1)
        i = np.arange(lo, hi + 1)
        pos = -(hi - i + 1) / width
        weight[lo:hi + 1] = profile.tp * (2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0) / max_tp
        window[lo:hi + 1] = w
        prev_end, prev_width, cursor = hi, width, hi + 1
    _fill_outside(weight, cursor, n, prev_end, prev_width, profile)
    start = probation_length(n)
    rows = np.arange(start, n, dtype=np.int64)
    return rows, weight[start:], window[start:]


def _fill_outside(weight: F64, lo: int, hi: int, prev_end: int | None, prev_width: float,
                  profile: Profile) -> None:
    """FP costs of rows ``lo..hi-1``, which lie after window ``prev_end`` (or before all)."""
    if hi <= lo:
        return
    if prev_end is None:
        weight[lo:hi] = -profile.fp
        return
    past = np.abs(np.arange(lo, hi) - prev_end) / max(prev_width - 1.0, 1.0)
    sig = np.where(past > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.minimum(5.0 * past, 700.0))) - 1.0)
    weight[lo:hi] = profile.fp * sig


def score_profile(files: Sequence[FileLabels], scores: Sequence[F64],
                  profile: Profile) -> ProfileScore:
    """Score one detector's anomaly scores (one array per file) under ``profile``.

    A row is a detection when its score is >= the threshold; every distinct score is tried
    as the threshold (and "flag nothing"), and the best total over all files is kept.
    """
    all_score: list[F64] = []
    all_weight: list[F64] = []
    all_window: list[I64] = []
    n_windows = 0
    perfect = 0.0
    for labels, s in zip(files, scores, strict=True):
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (labels.n_rows,):
            raise ValueError(f"{labels.name}: {s.shape[0] if s.ndim else 0} scores for "
                             f"{labels.n_rows} rows; give one score per row")
        rows, weight, window = row_weights(labels, profile)
        present = np.unique(window[window >= 0])
        if len(present) < len(labels.windows):
            logger.warning("%s: %d window(s) lie wholly in the probation period and are not"
                           " scored", labels.name, len(labels.windows) - len(present))
        remap = np.full(len(labels.windows), -1, dtype=np.int64)
        remap[present] = np.arange(n_windows, n_windows + len(present))
        for w in present:  # the earliest scored row of each window is the best possible
            perfect += float(weight[window == w].max())
        n_windows += len(present)
        all_score.append(np.nan_to_num(s[rows], nan=-np.inf))
        all_weight.append(weight)
        inside = window >= 0
        mapped = np.full(len(window), -1, dtype=np.int64)
        mapped[inside] = remap[window[inside]]
        all_window.append(mapped)
    score = np.concatenate(all_score) if all_score else np.empty(0)
    weight = np.concatenate(all_weight) if all_weight else np.empty(0)
    window = np.concatenate(all_window) if all_window else np.empty(0, dtype=np.int64)
    null = -profile.fn * n_windows
    best = _sweep(score, weight, window, n_windows, profile, null)
    raw, threshold = best
    tp, fp, fn = _counts(score, window, n_windows, threshold)
    span = perfect - null
    normalised = 100.0 * (raw - null) / span if span > 0 else 0.0
    return ProfileScore(profile.name, float(normalised), float(raw), float(null),
                        float(perfect), threshold, tp, fp, fn)


def _sweep(score: F64, weight: F64, window: I64, n_windows: int, profile: Profile,
           null: float) -> tuple[float, float]:
    """Lower the threshold through every distinct score; the best (raw total, threshold)."""
    order = np.argsort(-score, kind="stable")
    best_raw, best_threshold = null, math.inf
    total = null
    tp_of = np.full(n_windows, -np.inf)
    s_sorted = score[order]
    k = 0
    while k < len(order) and s_sorted[k] > -np.inf:
        threshold = s_sorted[k]
        while k < len(order) and s_sorted[k] == threshold:
            i = order[k]
            w = window[i]
            if w < 0:
                total += weight[i]
            elif tp_of[w] == -np.inf:
                tp_of[w] = weight[i]
                total += weight[i] + profile.fn
            elif weight[i] > tp_of[w]:  # an earlier detection in the same window
                total += weight[i] - tp_of[w]
                tp_of[w] = weight[i]
            k += 1
        if total > best_raw + 1e-12:
            best_raw, best_threshold = total, float(threshold)
    return best_raw, best_threshold


def _counts(score: F64, window: I64, n_windows: int, threshold: float) -> tuple[int, int, int]:
    hit = score >= threshold
    tp = len(np.unique(window[hit & (window >= 0)]))
    fp = int(np.count_nonzero(hit & (window < 0)))
    return tp, fp, n_windows - tp


def window_rule_mismatches(labels: FileLabels, n_labels: int,
                           fraction: float = 0.10) -> list[tuple[int, int, int]]:
    """Windows whose width is not ``fraction * n_rows / n_labels`` (+-1 row).

    Windows clipped by the file's edges or merged with a neighbour legitimately differ;
    returns ``(lo, hi, expected_width)`` of each for the caller to report.
    """
    if n_labels <= 0:
        return []
    expected = int(fraction * labels.n_rows / n_labels)
    return [(lo, hi, expected) for lo, hi in labels.windows
            if abs((hi - lo + 1) - expected) > 1]
