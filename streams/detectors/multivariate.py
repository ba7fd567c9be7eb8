"""Multivariate detectors per asset, on the window features of all its tags together.

- :class:`PCADetector`: online PCA of the standardised features; Hotelling's T² (unusual
  along the usual directions) and SPE/Q (off the usual subspace: a broken correlation
  between tags that are each in range). The drivers are the features' shares of the SPE.

Both: warm-up, an adaptive threshold (running quantile of the own statistic x margin),
learning only complete, finite, unflagged rows (self-gated in ``learn_one``), and state as
plain attributes (they pickle); ``state()``/``from_state`` wrap the pickle as text.
"""

from __future__ import annotations

import base64
import logging
import pickle
from typing import Any, TypeVar

import numpy as np

from streams.detectors.base import F64, MAX_SCORE, Detector
from streams.detectors.columns import small_sample

__all__ = ["PCADetector"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="_AssetDetector")


class _AssetDetector(Detector):
    """Feature order, complete-row check, adaptive threshold and pickled state."""

    def __init__(self, warmup: int, quantile: float, margin: float, history: int) -> None:
        self.warmup = warmup
        self.quantile = quantile
        self.margin = margin
        self.history = history
        self.features: list[str] = []
        self.n = 0
        self.hist: list[float] = []
        self.thr = float("nan")
        self.max_gap = 1000  # rows without a complete one: the model is stale, start again
        self.gap = 0

    def _vector(self, x: dict[str, float]) -> F64 | None:
        """The row in feature order; None if it is incomplete or not finite."""
        if not self.features:
            self.features = sorted(x)
        try:
            v = np.array([float(x[f]) for f in self.features])
        except (KeyError, TypeError, ValueError):
            return None
        if not np.all(np.isfinite(v)) or np.max(np.abs(v)) > 1e150:
            return None  # squares of such values overflow: no score, not learned
        return v

    def _to_learn(self, x: dict[str, float]) -> F64 | None:
        """The row to learn from: None if it is incomplete (counted: after ``max_gap`` such
        rows the model is stale and starts again) or anomalous (never learned)."""
        v = self._vector(x)
        if v is None:
            self.gap += 1
            return None
        if self.gap > self.max_gap:
            logger.info("%s: no complete row for %d steps: starting again", self.name,
                        self.gap)
            self.__init__(**self.config())  # type: ignore[misc]
            self.features = sorted(x)
        self.gap = 0
        return None if self.score_one(x) > 1.0 else v

    def _ratio(self, stat: float) -> float:
        if self.n < self.warmup or not np.isfinite(self.thr) or not np.isfinite(stat):
            return float("nan")
        return float(min(stat / self.thr, MAX_SCORE))

    def _remember(self, stat: float, floor: float) -> None:
        if np.isfinite(stat) and self.n > self.warmup // 2:
            self.hist.append(stat)
            del self.hist[:-self.history]
        if len(self.hist) >= 10:
            q = float(np.quantile(self.hist, self.quantile))
            self.thr = max(q * self.margin * float(small_sample(len(self.hist))), floor)

    def state(self, arrays: bool = False) -> dict[str, Any]:  # pickled: arrays either way
        return {"detector": type(self).__name__, "config": self.config(),
                "pickle": base64.b64encode(pickle.dumps(self)).decode()}

    @classmethod
    def from_state(cls: type[M], d: dict[str, Any]) -> M:
        obj = pickle.loads(base64.b64decode(d["pickle"]))  # our own checkpoint, not input
        if not isinstance(obj, cls):
            raise ValueError(f"state holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj


class PCADetector(_AssetDetector):
    """Hotelling T² and SPE of the features against an online PCA; score = the larger ratio.

    ``t2=False`` scores the SPE alone: only broken correlations, leaving "further than
    usual along the usual directions" (levels that move together) to per-tag detectors.
    """

    name = "pca_t2_spe"

    def __init__(self, variance: float = 0.9, alpha: float = 0.01, warmup: int = 50,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 refresh: int = 10, t2: bool = True) -> None:
        super().__init__(warmup, quantile, margin, history)
        self.t2 = t2
        self.variance = variance
        self.alpha = alpha
        self.refresh = refresh
        self.mean: F64 | None = None
        self.cov: F64 | None = None
        self.basis = np.zeros((0, 0))
        self.eig = np.zeros(0)
        self.hist_spe: list[float] = []
        self.thr_spe = float("nan")

    def _parts(self, v: F64) -> tuple[float, float, F64]:
        assert self.mean is not None and self.cov is not None
        sd = np.sqrt(np.maximum(np.diag(self.cov), 1e-12 * (1 + self.mean ** 2)))
        z = (v - self.mean) / sd
        t = self.basis.T @ z
        resid = z - self.basis @ t
        t2 = float(np.sum(t * t / np.maximum(self.eig, 1e-9)))
        return t2, float(resid @ resid), resid * resid

    def score_one(self, x: dict[str, float]) -> float:
        v = self._vector(x)
        if v is None or self.mean is None or len(self.eig) == 0 or self.gap > self.max_gap:
            return float("nan")
        t2, spe, _ = self._parts(v)
        spe_ratio = (float("nan") if not np.isfinite(self.thr_spe)
                     else min(spe / self.thr_spe, MAX_SCORE))
        t2_ratio = self._ratio(t2) if self.t2 else float("nan")
        ratios = [r for r in (t2_ratio, spe_ratio) if np.isfinite(r)]
        return max(ratios) if ratios and self.n >= self.warmup else float("nan")

    def explain(self, x: dict[str, float]) -> list[tuple[str, float]]:
        v = self._vector(x)
        if v is None or self.mean is None or len(self.eig) == 0:
            return []
        _, spe, contrib = self._parts(v)
        share = contrib / max(spe, 1e-300)
        return sorted(zip(self.features, share.tolist(), strict=True), key=lambda p: -p[1])

    def learn_one(self, x: dict[str, float]) -> None:
        v = self._to_learn(x)
        if v is None:
            return
        if self.mean is None or self.cov is None:
            self.mean, self.cov = v.copy(), np.zeros((len(v), len(v)))
        else:
            if len(self.eig):
                t2, spe, _ = self._parts(v)
                self._remember(t2, 1.0)
                if np.isfinite(spe) and self.n > self.warmup // 2:
                    self.hist_spe.append(spe)
                    del self.hist_spe[:-self.history]
                if len(self.hist_spe) >= 10:
                    q = float(np.quantile(self.hist_spe, self.quantile))
                    wide = float(small_sample(len(self.hist_spe)))
                    self.thr_spe = max(q * self.margin * wide, 0.1)
            a = max(self.alpha, 1.0 / (self.n + 1))
            d = v - self.mean
            self.mean = self.mean + a * d
            self.cov = (1 - a) * (self.cov + a * np.outer(d, d))
        self.n += 1
        if self.n % self.refresh == 0 or len(self.eig) == 0:
            self._decompose()

    def _decompose(self) -> None:
        assert self.mean is not None and self.cov is not None
        sd = np.sqrt(np.maximum(np.diag(self.cov), 1e-12 * (1 + self.mean ** 2)))
        corr = self.cov / np.outer(sd, sd)
        w, vecs = np.linalg.eigh(corr)
        order = np.argsort(w)[::-1]
        w, vecs = np.maximum(w[order], 0.0), vecs[:, order]
        total = float(w.sum())
        if total <= 0:
            return
        k = int(np.searchsorted(np.cumsum(w) / total, self.variance) + 1)
        self.eig, self.basis = w[:k], vecs[:, :k]
