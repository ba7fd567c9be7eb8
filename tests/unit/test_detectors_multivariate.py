"""The PCA detector finds a broken correlation between tags that each stay in range."""

from __future__ import annotations

import numpy as np

from streams.detectors import PCADetector


def test_a_broken_correlation_is_flagged_with_its_drivers_ranked() -> None:
    det = PCADetector()
    rng = np.random.default_rng(0)
    flags = 0
    for i in range(1500):
        a = 50 + 10 * np.sin(i / 50) + rng.normal(0, 0.3)
        x = {"flow": a, "power": 2 * a + rng.normal(0, 0.3), "temp": 20 + rng.normal(0, 0.3)}
        flags += det.score_one(x) > 1
        det.learn_one(x)
    assert flags / 1500 < 0.02
    # the pump's power stops following the flow, but stays within its usual range
    broken = {"flow": 55.0, "power": 90.0, "temp": 20.0}
    assert det.score_one(broken) > 1
    found = det.detect_one("pump-1", broken)
    assert found is not None and found.detector == "pca_t2_spe"
    assert {found.drivers[0][0], found.drivers[1][0]} == {"flow", "power"}
    assert found.drivers[0][1] >= found.drivers[-1][1]
