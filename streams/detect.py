"""Online anomaly detection on window statistics with River.

Per (tag, feature) of analog tags, a :class:`GuardedSAD` — river's
``StandardAbsoluteDeviation`` with a floor under its scale — scores each closed window's
feature (mean, std, ...). :class:`WindowDetector` owns the warm-up and the rule that a
window it flagged is not learned, so a drift does not teach itself normal; and the
re-baseline: a tag anomalous for ``rebaseline_windows`` windows in a row has moved to a
new operating point, so its statistics restart (with a new warm-up) from there.

Lifecycle: ``WindowDetector(threshold, warmup_windows, features, analog_tags)``, then
``observe(aggregate, now_ms)`` for every closed window, in window order per tag;
``snapshot(tags)``/``restore(doc)``/``drop(tags)`` move a tag's state between workers as
plain data (River's own statistics, tagged with River's version: see :meth:`restore`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import river
from river import anomaly, stats

from schemas.catalog import Catalog, DetectorSpec
from schemas.events import Aggregate, Anomaly
from streams.exceptions import StateVersionError

__all__ = ["DETECTOR_NAME", "GuardedSAD", "WindowDetector", "anomaly_id",
           "detector_from_catalog"]

logger = logging.getLogger(__name__)

DETECTOR_NAME = "river.anomaly.StandardAbsoluteDeviation"
MAX_SCORE = 1e12  # scores stay finite: they go into JSON
STATE_VERSION = 1  # of WindowDetector.snapshot's layout


def anomaly_id(detector: str, tag: str, window_start: int, feature: str) -> str:
    """The same window's anomaly always gets the same id, so one replayed after a crash
    (at-least-once) replaces the first in ClickHouse instead of counting twice."""
    key = f"{detector}\0{tag}\0{window_start}\0{feature}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


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

    def state(self) -> list[float]:
        """Plain data: ``[n, mean.n, mean, var.n, var.mean, var.S]``, the fields of
        River's ``stats.Mean`` and ``stats.Var`` inside the SAD (exact, no rounding)."""
        sub, var = self.sad.sub_stat, self.sad.variance
        if not isinstance(sub, stats.Mean):  # pragma: no cover - built here with a Mean
            raise TypeError(f"cannot snapshot a SAD over {type(sub).__name__}")
        return [float(self.n), float(sub.n), float(sub._mean), float(var.mean.n),
                float(var.mean._mean), float(var._S)]

    @classmethod
    def from_state(cls, state: Sequence[float], min_scale: float = 1e-9,
                   rel_scale: float = 1e-9) -> GuardedSAD:
        """The inverse of :meth:`state`."""
        g = cls(min_scale, rel_scale)
        n, sub_n, sub_mean, var_n, var_mean, var_s = state
        g.n = int(n)
        sub = g.sad.sub_stat
        assert isinstance(sub, stats.Mean)
        sub.n, sub._mean = sub_n, sub_mean
        g.sad.variance.mean.n, g.sad.variance.mean._mean = var_n, var_mean
        g.sad.variance._S = var_s
        return g


@dataclass
class _TagState:
    windows: int = 0  # since the last (re)start
    run: int = 0  # anomalous windows in a row
    models: dict[str, GuardedSAD] = field(default_factory=dict)


class WindowDetector:
    """Scores the features of each closed window of the given tags.

    Emits nothing for a tag's first ``warmup_windows`` windows (it only learns). Then a
    feature scoring above ``threshold`` is an anomaly; a window with any anomaly is not
    learned from. After ``rebaseline_windows`` anomalous windows in a row the tag's models
    restart, warm-up included. Counts ``scored``, ``flagged`` and ``rebaselined``.
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
        self._state: dict[str, _TagState] = {}
        self.scored = 0
        self.flagged = 0

    def observe(self, agg: Aggregate, now_ms: int) -> list[Anomaly]:
        """Score one closed window, learn from it if it looks normal; return anomalies."""
        if self.tags is not None and agg.tag not in self.tags:
            return []
        st = self._state.get(agg.tag)
        if st is None:
            st = self._state[agg.tag] = _TagState()
            st.models = {f: GuardedSAD() for f in self.features}
        values = {f: float(getattr(agg, f)) for f in self.features}
        st.windows += 1
        found: list[Anomaly] = []
        if st.windows > self.warmup_windows:
            self.scored += 1
            for f, x in values.items():
                score = st.models[f].score_one(x)
                if score > self.threshold:
                    found.append(Anomaly(
                        anomaly_id=anomaly_id(DETECTOR_NAME, agg.tag, agg.window_start, f),
                        tag=agg.tag,
                        window_start=agg.window_start, window_end=agg.window_end,
                        feature=f, value=x, score=score, threshold=self.threshold,
                        detector=DETECTOR_NAME, detected_at=now_ms,
                    ))
        if found:
            self.flagged += 1
            st.run += 1
            logger.debug("window %s@%d anomalous: %s", agg.tag, agg.window_start,
                         [(a.feature, round(a.score, 2)) for a in found])
            if st.run >= self.rebaseline_windows:
                logger.info("%s anomalous for %d windows in a row: new operating point, "
                            "re-baselining", agg.tag, st.run)
                self._state[agg.tag] = _TagState(
                    models={f: GuardedSAD() for f in self.features})
                self.rebaselined += 1
        else:
            st.run = 0
            for f, x in values.items():
                st.models[f].learn_one(x)
        return found

    # -- persistence --------------------------------------------------------------------
    def snapshot(self, tags: Iterable[str] | None = None) -> dict[str, Any]:
        """The state of ``tags`` (or of all) as plain data, tagged with the layout and
        River's version (a River upgrade may change the statistics' fields)."""
        pick = self._state if tags is None else {t: self._state[t] for t in tags
                                                 if t in self._state}
        return {"version": STATE_VERSION, "river": river.__version__,
                "features": list(self.features),
                "tags": {t: [st.windows, st.run, [st.models[f].state() for f in self.features]]
                         for t, st in pick.items()}}

    def restore(self, doc: dict[str, Any], *, replace: bool = True) -> None:
        """Take the tags of a :meth:`snapshot`, instead of all state (``replace``) or
        besides the tags held. Refuses another layout or another River release: their
        statistics might not mean the same."""
        version, made_with = doc.get("version"), str(doc.get("river"))
        if version != STATE_VERSION:
            raise StateVersionError("detector state", f"layout {version}",
                                    f"layout {STATE_VERSION}")
        if made_with.split(".")[:2] != river.__version__.split(".")[:2]:
            raise StateVersionError("detector state", f"River {made_with}",
                                    f"River {river.__version__}")
        saved = list(doc["features"])
        if replace:
            self._state = {}
        for tag, (windows, run, models) in doc["tags"].items():
            by_feature = dict(zip(saved, models, strict=True))
            st = _TagState(windows=int(windows), run=int(run))
            st.models = {f: GuardedSAD.from_state(by_feature[f]) if f in by_feature
                         else GuardedSAD() for f in self.features}
            self._state[tag] = st

    def drop(self, tags: Iterable[str]) -> None:
        """Forget these tags (their partition moved to another worker)."""
        for tag in tags:
            self._state.pop(tag, None)


def detector_from_catalog(catalog: Catalog) -> WindowDetector:
    """The detector the catalog configures, over its analog tags."""
    spec = catalog.detector or DetectorSpec()
    analog = [path for path, info in catalog.tags().items() if info.spec.kind == "analog"]
    return WindowDetector(spec.threshold, spec.warmup_windows, spec.features, analog,
                          rebaseline_windows=spec.rebaseline_windows)
