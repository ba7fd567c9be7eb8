"""River's HalfSpaceTrees per asset, with the contract every millstream detector keeps.

:class:`HSTDetector` standardises each feature against its own running level and spread
(learned from normal rows only), maps the z values onto [0, 1] (``zmax`` deviations at
either end) and scores the row with ``river.anomaly.HalfSpaceTrees``. River's score (0..1,
1 when the row falls where the trees saw no mass) becomes its surprisal
``-log(1 - s)``, divided by an adaptive threshold (a high running quantile over learned
rows, times a margin), so that, as for the other detectors, ``score > 1`` is anomalous.
The drivers are the features' shares of the squared z. Warm-up: no score before
``warmup`` rows, and before the trees have seen one full window (``window_size`` rows,
learned from ``warmup // 2`` on).
"""

from __future__ import annotations

import math

import numpy as np
from river import anomaly

from streams.detectors.base import F64
from streams.detectors.multivariate import _AssetDetector

__all__ = ["HSTDetector"]


class HSTDetector(_AssetDetector):
    """Half-space trees on standardised features; score = surprisal / adaptive threshold."""

    name = "hst"

    def __init__(self, n_trees: int = 10, height: int = 6, window_size: int = 50,
                 zmax: float = 6.0, alpha: float = 0.02, warmup: int = 50,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 seed: int = 7) -> None:
        super().__init__(warmup, quantile, margin, history)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.zmax = zmax
        self.alpha = alpha
        self.seed = seed
        self.mean: F64 | None = None
        self.dev: F64 | None = None
        self.fed = 0  # rows the trees learned: they score after one full window
        self.model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height,
                                            window_size=window_size, seed=seed)

    def _z(self, v: F64) -> F64:
        assert self.mean is not None and self.dev is not None
        scale = np.maximum(1.2533 * self.dev, 1e-9 * (1.0 + np.abs(self.mean)))
        return np.clip((v - self.mean) / scale, -self.zmax, self.zmax)

    def _unit(self, z: F64) -> dict[str, float]:
        u = (z + self.zmax) / (2.0 * self.zmax)
        return {f: float(x) for f, x in zip(self.features, u.tolist(), strict=True)}

    def _odds(self, v: F64) -> float:
        s = float(self.model.score_one(self._unit(self._z(v))))
        return -math.log(max(1.0 - s, 1e-12))

    def _ready(self) -> bool:
        return (self.mean is not None and self.fed >= self.window_size
                and self.n >= self.warmup and self.gap <= self.max_gap)

    def score_one(self, x: dict[str, float]) -> float:
        v = self._vector(x)
        if v is None or not self._ready():
            return float("nan")
        return self._ratio(self._odds(v))

    def explain(self, x: dict[str, float]) -> list[tuple[str, float]]:
        v = self._vector(x)
        if v is None or self.mean is None:
            return []
        z2 = self._z(v) ** 2
        share = z2 / max(float(z2.sum()), 1e-300)
        return sorted(zip(self.features, share.tolist(), strict=True), key=lambda p: -p[1])

    def learn_one(self, x: dict[str, float]) -> None:
        v = self._to_learn(x)
        if v is None:
            return
        if self.mean is None or self.dev is None:
            self.mean, self.dev = v.copy(), np.zeros(len(v))
        else:
            a = max(self.alpha, 1.0 / (self.n + 1))
            self.dev = self.dev + a * (np.abs(v - self.mean) - self.dev)
            self.mean = self.mean + a * (v - self.mean)
        if self.n >= self.warmup // 2:  # the scale has settled enough to place the trees
            if self._ready():
                self._remember(self._odds(v), 1e-6)
            self.model.learn_one(self._unit(self._z(v)))
            self.fed += 1
        self.n += 1
