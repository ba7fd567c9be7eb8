"""Online anomaly detection on window statistics: river's SAD, per tag and feature.

Per (tag, feature) of analog tags, river's ``StandardAbsoluteDeviation`` with a floor
under its scale (:class:`GuardedSAD`) scores each closed window's feature (mean, std,
...). :class:`WindowDetector` owns the warm-up and the rule that a window it flagged is
not learned, so a drift does not teach itself normal; and the re-baseline: a tag
anomalous for ``rebaseline_windows`` windows in a row has moved to a new operating point,
so its statistics restart (with a new warm-up) from there. It keeps the statistics of
every tag in arrays (:class:`streams.sad.SadColumns`, the same arithmetic as river's
``stats.Mean``/``stats.Var``), so a closed window set of 10,000 tags is scored in a few
NumPy calls rather than 40,000 River calls; :class:`GuardedSAD` is the one-stream
reference it is tested against.

Lifecycle: ``WindowDetector(threshold, warmup_windows, features, analog_tags)``, then
``observe_columns(...)`` (or ``observe(aggregate, now_ms)``) for every closed window, in
window order per tag.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from river import anomaly

from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly
from streams.sad import MAX_SCORE, SadColumns

__all__ = ["DETECTOR_NAME", "GuardedSAD", "WindowDetector", "detector_from_catalog"]

logger = logging.getLogger(__name__)

DETECTOR_NAME = "river.anomaly.StandardAbsoluteDeviation"
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class GuardedSAD:
    """River's SAD on one univariate stream, with a scale floor.

    ``score_one(x) = |x - mean| / max(std, min_scale, rel_scale * |mean|)``. River divides
    by ``std + 1e-10``; for a history that is (almost) constant that turns rounding noise
    into huge scores, and a stuck sensor into an unbounded one. The floor makes such
    noise score ~0 while a real change (a stuck sensor's std falling to 0 after a noisy
    history) still scores high; scores are capped at ``MAX_SCORE`` and never NaN.
    """

    def __init__(self, min_scale: float = 1e-9, rel_scale: float = 1e-9) -> None:
        self.min_scale = min_scale
        self.rel_scale = rel_scale
        self.sad = anomaly.StandardAbsoluteDeviation()
        self.n = 0

    def learn_one(self, x: float) -> None:
        if math.isfinite(x):
            self.sad.learn_one(None, x)
            self.n += 1

    def score_one(self, x: float) -> float:
        if not math.isfinite(x):
            return MAX_SCORE
        if self.n == 0:
            return 0.0
        mean = float(self.sad.sub_stat.get() or 0.0)
        std = math.sqrt(max(float(self.sad.variance.get()), 0.0))
        scale = max(std, self.min_scale, self.rel_scale * abs(mean))
        score = abs(x - mean) / scale
        return min(score, MAX_SCORE) if math.isfinite(score) else MAX_SCORE


class WindowDetector:
    """Scores the features of each closed window of the given tags.

    Emits nothing for a tag's first ``warmup_windows`` windows (it only learns). Then a
    feature scoring above ``threshold`` is an anomaly; a window with any anomaly is not
    learned from. After ``rebaseline_windows`` anomalous windows in a row the tag's models
    restart, warm-up included. Counts ``scored``, ``flagged`` and ``rebaselined``.

    The state is columnar (one slot per tag, :class:`streams.sad.SadColumns` per
    feature): :meth:`observe_columns` scores every tag of a closed window set in a few
    NumPy calls; :meth:`observe` is the same for one aggregate.
    """

    def __init__(self, threshold: float = 6.0, warmup_windows: int = 10,
                 features: Sequence[str] = ("mean", "std"),
                 tags: Iterable[str] | None = None, rebaseline_windows: int = 30) -> None:
        self.threshold = threshold
        self.warmup_windows = warmup_windows
        self.rebaseline_windows = rebaseline_windows
        self.rebaselined = 0
        self.features = tuple(features)
        self.tags = frozenset(tags) if tags is not None else None
        self._slot: dict[str, int] = {}
        self._names: list[str] = []
        self._windows = np.zeros(0, np.int64)  # per tag: windows since the last (re)start
        self._run = np.zeros(0, np.int64)  # per tag: anomalous windows in a row
        self._models = {f: SadColumns() for f in self.features}
        self._seen_rows: dict[tuple[str, ...], tuple[I64, I64] | None] = {}
        self.scored = 0
        self.flagged = 0

    def observe(self, agg: Aggregate, now_ms: int) -> list[Anomaly]:
        """Score one closed window, learn from it if it looks normal; return anomalies."""
        return self.observe_columns(
            [agg.tag], np.asarray([agg.window_start], np.int64),
            agg.window_end - agg.window_start,
            {f: np.asarray([float(getattr(agg, f))]) for f in self.features}, now_ms)

    def observe_columns(self, tags: Sequence[str], window_start: I64, window_ms: int,
                        features: Mapping[str, F64], now_ms: int) -> list[Anomaly]:
        """Score closed windows of one size given as columns (row ``i`` is ``tags[i]``
        from ``window_start[i]``; ``features`` holds at least this detector's features),
        in window order per tag; learn from the normal ones; return the anomalies."""
        rows = self._rows(tags)
        if rows is None:
            return []
        pick, slot = rows
        start = window_start[pick]
        x = {f: np.asarray(features[f], np.float64)[pick] for f in self.features}
        found: list[Anomaly] = []
        if len(np.unique(slot)) == len(slot):
            self._step(slot, start, window_ms, x, now_ms, found)
            return found
        order = np.lexsort((start, slot))  # a tag with several windows: one round each
        slot, start = slot[order], start[order]
        x = {f: v[order] for f, v in x.items()}
        first = np.r_[0, np.flatnonzero(np.diff(slot)) + 1]
        rank = np.arange(len(slot)) - np.repeat(first, np.diff(np.r_[first, len(slot)]))
        for k in range(int(rank.max()) + 1):
            r = np.flatnonzero(rank == k)
            self._step(slot[r], start[r], window_ms, {f: v[r] for f, v in x.items()},
                       now_ms, found)
        return found

    def _rows(self, tags: Sequence[str]) -> tuple[I64, I64] | None:
        """The rows of tags this detector watches and each one's slot (new tags get one).
        A source's closed windows name the same tags time after time: remembered."""
        key = tuple(tags)
        if key in self._seen_rows:
            return self._seen_rows[key]
        if len(self._seen_rows) >= 1024:  # a bound, not a policy: tag sets rarely change
            self._seen_rows.clear()
        found = self._seen_rows[key] = self._find_rows(tags)
        return found

    def _find_rows(self, tags: Sequence[str]) -> tuple[I64, I64] | None:
        wanted = self.tags
        pick: list[int] = []
        slot: list[int] = []
        index = self._slot
        for i, t in enumerate(tags):
            j = index.get(t)
            if j is None:
                if wanted is not None and t not in wanted:
                    continue
                j = index[t] = len(self._names)
                self._names.append(t)
            pick.append(i)
            slot.append(j)
        if not pick:
            return None
        size = len(self._names)
        if size > len(self._windows):
            extra = size - len(self._windows)
            self._windows = np.concatenate((self._windows, np.zeros(extra, np.int64)))
            self._run = np.concatenate((self._run, np.zeros(extra, np.int64)))
            for m in self._models.values():
                m.grow(size)
        return np.asarray(pick, np.int64), np.asarray(slot, np.int64)

    def _step(self, slot: I64, start: I64, window_ms: int, x: dict[str, F64], now_ms: int,
              found: list[Anomaly]) -> None:
        """One window per tag (distinct slots): score, flag, re-baseline or learn."""
        windows = self._windows[slot] + 1
        self._windows[slot] = windows
        scoring = windows > self.warmup_windows
        hit = np.zeros(len(slot), bool)
        if scoring.any():
            self.scored += int(np.count_nonzero(scoring))
            for f, v in x.items():
                score = self._models[f].score(slot, v)
                over = scoring & (score > self.threshold)
                hit |= over
                for i in np.flatnonzero(over).tolist():
                    ws = int(start[i])
                    found.append(Anomaly(
                        anomaly_id=uuid.uuid4().hex, tag=self._names[int(slot[i])],
                        window_start=ws, window_end=ws + window_ms, feature=f,
                        value=float(v[i]), score=float(score[i]), threshold=self.threshold,
                        detector=DETECTOR_NAME, detected_at=now_ms))
        if hit.any():
            self.flagged += int(np.count_nonzero(hit))
            hs = slot[hit]
            self._run[hs] += 1
            moved = hs[self._run[hs] >= self.rebaseline_windows]
            if len(moved):
                logger.info("%d tag(s) anomalous for %d windows in a row: new operating "
                            "point, re-baselining %s", len(moved), self.rebaseline_windows,
                            [self._names[i] for i in moved[:5].tolist()])
                self._windows[moved] = 0
                self._run[moved] = 0
                for m in self._models.values():
                    m.reset(moved)
                self.rebaselined += len(moved)
        normal = ~hit
        if normal.any():
            ns = slot[normal]
            self._run[ns] = 0
            for f, v in x.items():
                self._models[f].learn(ns, v[normal])


def detector_from_catalog(catalog: Catalog) -> WindowDetector:
    """The detector the catalog configures, over its analog tags."""
    spec = catalog.detector
    analog = [path for path, info in catalog.tags().items() if info.spec.kind == "analog"]
    return WindowDetector(spec.threshold, spec.warmup_windows, spec.features, analog,
                          rebaseline_windows=spec.rebaseline_windows)
