"""All univariate detectors over the same columns, combined: one score per column per step.

:class:`TagBank` runs each member on the step's row, takes the highest member score per
column (members' scores are all in "threshold units", so they compare), learns only from
good-quality values of columns it did not flag, and re-baselines a column that stayed
anomalous for ``rebaseline`` steps in a row (a new operating point: a new setpoint,
another product), which warms its models up again on the new level.

Lifecycle: ``TagBank(...)``; ``add_columns(names)``; per step ``step(x, good)`` returns a
:class:`BankStep` (or ``score(x)`` then ``learn(x, flagged, fit)`` when the caller decides
what counts as flagged); ``detections(step)`` turns its flagged columns into detections.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.detectors.base import B8, F64, Detection, Detector
from streams.detectors.columns import ColumnDetector
from streams.detectors.univariate import (
    CusumDetector,
    LevelShiftDetector,
    SpikeDetector,
    StuckDetector,
    VarianceDetector,
)

__all__ = ["UNIVARIATE", "BankStep", "TagBank"]

logger = logging.getLogger(__name__)

UNIVARIATE: dict[str, type[ColumnDetector]] = {
    d.name: d for d in (SpikeDetector, LevelShiftDetector, CusumDetector, VarianceDetector,
                        StuckDetector)
}


@dataclass(frozen=True)
class BankStep:
    """One step's result: per column the combined score, and each member's score."""

    score: F64  # (n_columns,): max over members; NaN = no score
    members: F64  # (n_members, n_columns)
    flagged: B8  # score > 1


class TagBank(Detector):
    """The univariate detectors of :data:`UNIVARIATE` named in ``detectors``, combined."""

    name = "univariate"

    def __init__(self, detectors: Sequence[str] = tuple(UNIVARIATE), warmup: int = 30,
                 quantile: float = 0.99, margin: float = 1.5, history: int = 500,
                 rebaseline: int = 30) -> None:
        unknown = [d for d in detectors if d not in UNIVARIATE]
        if unknown:
            raise ValueError(f"unknown univariate detector(s) {unknown}; known: "
                             f"{sorted(UNIVARIATE)}")
        self.detectors = list(detectors)
        self.warmup = warmup
        self.quantile = quantile
        self.margin = margin
        self.history = history
        self.rebaseline = rebaseline
        self.members: list[ColumnDetector] = [
            UNIVARIATE[d](warmup=warmup, quantile=quantile, margin=margin, history=history)
            for d in self.detectors]
        self.run = np.zeros(0, dtype=np.int64)  # flagged steps in a row per column
        self.rebaselined = 0

    @property
    def columns(self) -> list[str]:
        return self.members[0].columns if self.members else []

    def add_columns(self, names: list[str]) -> None:
        before = len(self.columns)
        for m in self.members:
            m.add_columns(names)
        grown = len(self.columns) - before
        self.run = np.concatenate([self.run, np.zeros(grown, dtype=np.int64)])

    def score_members(self, x: F64) -> F64:
        """Each member's scores of row ``x``, shape (n_members, n_columns); pure."""
        return np.vstack([m.score_many(x) for m in self.members])

    def score(self, x: F64) -> BankStep:
        """Score row ``x`` (NaN = no value) with every member; pure."""
        members = self.score_members(np.asarray(x, dtype=np.float64))
        valid = np.isfinite(members)
        score = np.where(valid.any(axis=0), np.max(np.where(valid, members, -np.inf), axis=0),
                         np.nan)
        return BankStep(score, members, score > 1.0)

    def learn(self, x: F64, flagged: B8, fit: B8 | None = None) -> B8:
        """Advance every member on row ``x``; fit the columns that are not ``flagged``
        (and, if given, ``fit``); re-baseline the columns flagged ``rebaseline`` times in
        a row. Returns the columns re-baselined now."""
        x = np.asarray(x, dtype=np.float64)
        learn = ~flagged if fit is None else ~flagged & fit
        for m in self.members:
            m.learn_many(x, learn)
        present = np.isfinite(x)
        self.run = np.where(flagged, self.run + 1, np.where(present, 0, self.run))
        moved = self.run >= self.rebaseline
        if moved.any():
            logger.info("%d column(s) anomalous for %d steps in a row: re-baselining %s",
                        int(moved.sum()), self.rebaseline,
                        [self.columns[i] for i in np.flatnonzero(moved)[:5]])
            for m in self.members:
                m.reset(moved)
            self.run[moved] = 0
            self.rebaselined += int(moved.sum())
        return moved

    def step(self, x: F64, good: B8 | None = None) -> BankStep:
        """Score row ``x`` (NaN = no value), then learn its good, unflagged values."""
        x = np.asarray(x, dtype=np.float64)
        if good is not None:
            x = np.where(good, x, np.nan)
        result = self.score(x)
        self.learn(x, result.flagged)
        return result

    def detections(self, result: BankStep) -> list[Detection]:
        """The flagged columns, each with its members ranked by score (the drivers)."""
        out = []
        for i in np.flatnonzero(result.flagged):
            ranked = sorted(((self.detectors[k], float(result.members[k, i]))
                             for k in range(len(self.members))
                             if np.isfinite(result.members[k, i])), key=lambda d: -d[1])
            out.append(Detection(self.columns[i], float(result.score[i]), 1.0,
                                 f"{self.name}:{ranked[0][0]}", tuple(ranked)))
        return out

    # -- river's contract on dicts ---------------------------------------------------------

    def _row(self, x: dict[str, float]) -> F64:
        self.add_columns(list(x))
        return self.members[0]._row(x)

    def score_one(self, x: dict[str, float]) -> float:
        members = self.score_members(self._row(x))
        return float(np.nanmax(members)) if np.isfinite(members).any() else float("nan")

    def learn_one(self, x: dict[str, float]) -> None:
        self.step(self._row(x))

    def explain(self, x: dict[str, float]) -> list[tuple[str, float]]:
        members = self.score_members(self._row(x))
        pairs = [(f"{c}:{self.detectors[k]}", float(members[k, i]))
                 for k in range(len(self.members)) for i, c in enumerate(self.columns)
                 if c in x and np.isfinite(members[k, i])]
        return sorted(pairs, key=lambda p: -p[1])[:10]

    # -- state -----------------------------------------------------------------------------

    def state(self, arrays: bool = False) -> dict[str, Any]:
        return {"detector": type(self).__name__, "config": self.config(),
                "state": {"run": self.run.tolist(), "rebaselined": self.rebaselined},
                "members": [m.state(arrays) for m in self.members]}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TagBank:
        bank = cls(**d["config"])
        bank.members = [UNIVARIATE[name].from_state(s)
                        for name, s in zip(bank.detectors, d["members"], strict=True)]
        bank.run = np.asarray(d["state"]["run"], dtype=np.int64)
        bank.rebaselined = int(d["state"]["rebaselined"])
        return bank
