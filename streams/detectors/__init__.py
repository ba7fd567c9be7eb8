"""Anomaly detectors: river's ``learn_one``/``score_one`` contract, vectorised per column.

Univariate detectors (:mod:`streams.detectors.univariate`) score every tag in one NumPy
operation per step; :class:`TagBank` combines them. :class:`KnnDetector`
(:mod:`streams.detectors.pattern`) learns each tag's repeating shapes, vectorised too.
Multivariate detectors score an asset's window features together: :class:`PCADetector`
(Hotelling T² and SPE) and :class:`HSTDetector` (river's HalfSpaceTrees).
"""

from streams.detectors.bank import UNIVARIATE, BankStep, TagBank
from streams.detectors.base import MAX_SCORE, Detection, Detector
from streams.detectors.columns import ColumnDetector
from streams.detectors.forest import HSTDetector
from streams.detectors.multivariate import PCADetector
from streams.detectors.pattern import KnnDetector
from streams.detectors.univariate import (
    CusumDetector,
    LevelShiftDetector,
    SpikeDetector,
    StuckDetector,
    VarianceDetector,
)

__all__ = [
    "MAX_SCORE",
    "UNIVARIATE",
    "BankStep",
    "ColumnDetector",
    "CusumDetector",
    "Detection",
    "Detector",
    "HSTDetector",
    "KnnDetector",
    "LevelShiftDetector",
    "PCADetector",
    "SpikeDetector",
    "StuckDetector",
    "TagBank",
    "VarianceDetector",
]
