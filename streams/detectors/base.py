"""The detector contract: river's ``learn_one(x)`` / ``score_one(x) -> float``.

``x`` is a dict ``{column: value}`` (a column is a tag, or a tag's window feature such as
``"line1/cnc-01/spindle_temp:mean"``). Constructor arguments are the configuration, stored
under their own names. A score is the raw statistic divided by the detector's adaptive
threshold, so ``score > 1`` means anomalous for every detector; ``NaN`` means "no score"
(warm-up, missing or non-finite input). Per-column detectors also take whole NumPy rows
(``score_many`` / ``learn_many``) so that 10,000 tags cost one array operation per step.

State: every detector is plain attributes (NumPy arrays, numbers, lists) and so pickles;
``state()`` gives a JSON-ready dict and ``from_state(d)`` rebuilds the detector from it.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["B8", "F64", "MAX_SCORE", "Detection", "Detector", "finite_or_nan"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
B8 = npt.NDArray[np.bool_]
MAX_SCORE = 1e12  # scores stay finite: they go into JSON

D = TypeVar("D", bound="Detector")


@dataclass(frozen=True)
class Detection:
    """One anomalous column or asset: what scored, how high, against what, and why."""

    subject: str  # the tag/column, or the asset for a multivariate detector
    score: float  # raw statistic / threshold unit: > 1 is anomalous
    threshold: float  # the score it exceeded (1.0 unless a detector says otherwise)
    detector: str
    drivers: tuple[tuple[str, float], ...]  # (feature, tag or detector, contribution), ranked


def finite_or_nan(a: F64, cap: float = MAX_SCORE) -> F64:
    """Scores as they leave a detector: +-inf capped at ``cap``, NaN kept as "no score"."""
    out = np.where(np.isinf(a), cap, a)
    return np.minimum(out, cap)


class Detector:
    """Base of every detector: configuration from the constructor, state as a dict.

    Subclasses implement ``learn_one``/``score_one`` (and ``explain`` for the drivers);
    ``_STATE`` names the attributes that are learned state rather than configuration.
    """

    name: ClassVar[str] = "detector"
    _STATE: ClassVar[tuple[str, ...]] = ()

    def learn_one(self, x: dict[str, float]) -> None:
        raise NotImplementedError

    def score_one(self, x: dict[str, float]) -> float:
        raise NotImplementedError

    def explain(self, x: dict[str, float]) -> list[tuple[str, float]]:
        """The columns that drove the last score of ``x``, highest contribution first."""
        return []

    def detect_one(self, subject: str, x: dict[str, float]) -> Detection | None:
        """Score ``x``; a :class:`Detection` if it is anomalous (score > 1), else None."""
        score = self.score_one(x)
        if not np.isfinite(score) or score <= 1.0:
            return None
        return Detection(subject, float(score), 1.0, self.name, tuple(self.explain(x)))

    # -- configuration and state -----------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The constructor arguments, read back from the attributes of the same names."""
        params = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in params if p != "self"}

    def state(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-ready: the configuration and the learned state (arrays as lists; with
        ``arrays`` the live NumPy arrays, for the checkpoint codec to copy at once)."""
        learned = {}
        for key in self._state_keys():
            value = getattr(self, key)
            learned[key] = (value.tolist() if isinstance(value, np.ndarray) and not arrays
                            else value)
        return {"detector": type(self).__name__, "config": self.config(), "state": learned}

    @classmethod
    def from_state(cls: type[D], d: dict[str, Any]) -> D:
        """Rebuild a detector from :meth:`state`'s output."""
        if d.get("detector") != cls.__name__:
            raise ValueError(f"state is of a {d.get('detector')!r}, not a {cls.__name__}; "
                             "restore it with that class")
        det = cls(**d["config"])
        for key, value in d["state"].items():
            current = getattr(det, key)
            if isinstance(current, np.ndarray):
                setattr(det, key, np.asarray(value, dtype=current.dtype))
            else:
                setattr(det, key, value)
        det._restored()
        return det

    def _state_keys(self) -> tuple[str, ...]:
        return self._STATE

    def _restored(self) -> None:
        """Hook: rebuild derived attributes after :meth:`from_state`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
