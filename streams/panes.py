"""Columnar window state: the running statistics of every tag of a source over one pane.

A pane is a window, or for hopping windows one hop of it. :class:`PaneStats` holds one
row per tag slot (arrays, not objects): count, mean, M2 (sum of squared deviations), min,
max, first and last (by source ts, then seq), and the reading counts behind the share of
good quality. Two states merge with Chan et al.'s parallel update, vectorised, so results
do not depend on how readings were split into frames or in which order they came.
:func:`group_frame` turns one frame into per-(tag, pane) states in one NumPy pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["F64", "I64", "PaneStats", "group_frame", "sort_frame"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_TS_MAX = np.iinfo(np.int64).max
_TS_MIN = np.iinfo(np.int64).min
_NAMES = ("n", "total", "good", "mean", "m2", "min", "max", "first", "first_ts", "first_seq",
          "last", "last_ts", "last_seq")


@dataclass(slots=True)
class PaneStats:
    """Statistics per row (a tag slot, or a (tag, pane) group of a frame)."""

    n: I64  # readings with a value: GOOD or UNCERTAIN
    total: I64  # all readings, BAD ones included
    good: I64  # GOOD readings with a value
    mean: F64
    m2: F64
    min: F64
    max: F64
    first: F64
    first_ts: I64
    first_seq: I64
    last: F64
    last_ts: I64
    last_seq: I64

    @classmethod
    def empty(cls, rows: int) -> PaneStats:
        i, f = np.zeros(rows, np.int64), np.zeros(rows, np.float64)
        return cls(i.copy(), i.copy(), i.copy(), f.copy(), f.copy(),
                   np.full(rows, np.inf), np.full(rows, -np.inf), f.copy(),
                   np.full(rows, _TS_MAX), i.copy(), f.copy(), np.full(rows, _TS_MIN), i.copy())

    def __len__(self) -> int:
        return len(self.n)

    def take(self, idx: I64) -> PaneStats:
        return PaneStats(*(getattr(self, name)[idx] for name in _NAMES))

    def put(self, idx: I64, rows: PaneStats) -> None:
        for name in _NAMES:
            getattr(self, name)[idx] = getattr(rows, name)

    def grow(self, rows: int) -> None:
        """Add empty slots up to ``rows`` (new tags of the source)."""
        extra = rows - len(self)
        if extra > 0:
            pad = PaneStats.empty(extra)
            for name in _NAMES:
                setattr(self, name, np.concatenate((getattr(self, name), getattr(pad, name))))

    def merge_at(self, idx: I64, other: PaneStats) -> None:
        """Fold ``other`` (later arrivals, one row per distinct ``idx``) into those rows."""
        n = len(idx)
        if n == len(self) and n and idx[0] == 0 and idx[-1] == n - 1:
            # every row, in order (``idx`` is sorted and distinct): no gather, no scatter
            whole = merge(self, other)
            for name in _NAMES:
                setattr(self, name, getattr(whole, name))
            return
        self.put(idx, merge(self.take(idx), other))

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, for a snapshot; strict JSON (an empty slot's min/max is null)."""
        doc = {f.name: getattr(self, f.name).tolist() for f in fields(self)}
        for name in ("min", "max"):
            doc[name] = [x if np.isfinite(x) else None for x in doc[name]]
        return doc

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The columns themselves (not copies), for a binary snapshot."""
        return {name: getattr(self, name) for name in _NAMES}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PaneStats:
        """From :meth:`to_dict` (lists) or :meth:`to_arrays` (arrays, taken as they are)."""
        if isinstance(doc["n"], np.ndarray):
            return cls(**{name: doc[name] for name in _NAMES})
        f64 = {"mean", "m2", "first", "last"}
        cols: dict[str, Any] = {f.name: np.asarray(doc[f.name],
                                                   np.float64 if f.name in f64 else np.int64)
                                for f in fields(cls) if f.name not in ("min", "max")}
        cols["min"] = np.asarray([np.inf if x is None else x for x in doc["min"]], np.float64)
        cols["max"] = np.asarray([-np.inf if x is None else x for x in doc["max"]], np.float64)
        return cls(**cols)


def merge(a: PaneStats, b: PaneStats) -> PaneStats:
    """Row-wise merge of ``b`` (arrived later) into ``a``. Ties on (ts, seq): ``first``
    keeps the earlier arrival, ``last`` takes the later one. A row without values has
    mean and M2 0, so it merges exactly (x + (y - 0) * 1 == y)."""
    n = a.n + b.n
    with np.errstate(invalid="ignore", over="ignore"):
        delta = b.mean - a.mean
        wb = b.n / np.maximum(n, 1)
        mean = a.mean + delta * wb
        m2 = a.m2 + b.m2 + delta * delta * a.n * wb
    bf = (b.first_ts < a.first_ts) | ((b.first_ts == a.first_ts) & (b.first_seq < a.first_seq))
    bl = (b.last_ts > a.last_ts) | ((b.last_ts == a.last_ts) & (b.last_seq >= a.last_seq))
    bl &= b.n > 0
    return PaneStats(
        n, a.total + b.total, a.good + b.good, mean, m2,
        np.minimum(a.min, b.min), np.maximum(a.max, b.max),
        np.where(bf, b.first, a.first), np.where(bf, b.first_ts, a.first_ts),
        np.where(bf, b.first_seq, a.first_seq),
        np.where(bl, b.last, a.last), np.where(bl, b.last_ts, a.last_ts),
        np.where(bl, b.last_seq, a.last_seq),
    )


def sort_frame(ids: I64, ts: I64, seq: I64) -> I64:
    """The order that groups a frame by tag, then time (ts, then seq): one sort serves
    every pane size, since a pane is a range of time."""
    return np.lexsort((seq, ts, ids))


def group_frame(ids: I64, ts: I64, seq: I64, value: F64, quality: npt.NDArray[np.int8],
                valid: npt.NDArray[np.bool_], pane_ms: int) -> tuple[I64, I64, PaneStats]:
    """Readings already in :func:`sort_frame` order, grouped by (tag slot, pane start).

    ``valid`` marks readings with a value (not BAD, not NaN): only they enter the value
    statistics; every reading counts in ``total``. Returns the slot, the pane start and
    the state of each group.
    """
    panes = ts - ts % pane_ms
    n = len(ids)
    edge = np.empty(n, bool)
    edge[0] = True
    np.not_equal(ids[1:], ids[:-1], out=edge[1:])
    edge[1:] |= panes[1:] != panes[:-1]
    starts = np.flatnonzero(edge)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    total = ends - starts
    good = np.add.reduceat((valid & (quality == 0)).astype(np.int64), starts)
    with np.errstate(over="ignore", invalid="ignore"):
        if valid.all():
            cnt = total
            sums = np.add.reduceat(value, starts)
            mean = sums / cnt
            dev = value - np.repeat(mean, cnt)
            m2 = np.add.reduceat(dev * dev, starts)
            lo = np.minimum.reduceat(value, starts)
            hi = np.maximum.reduceat(value, starts)
            fi, li = starts, ends - 1
            has = np.ones(len(starts), bool)
        else:
            cnt = np.add.reduceat(valid.astype(np.int64), starts)
            v0 = np.where(valid, value, 0.0)
            mean = np.add.reduceat(v0, starts) / np.maximum(cnt, 1)
            dev = np.where(valid, value - np.repeat(mean, total), 0.0)
            m2 = np.add.reduceat(dev * dev, starts)
            lo = np.minimum.reduceat(np.where(valid, value, np.inf), starts)
            hi = np.maximum.reduceat(np.where(valid, value, -np.inf), starts)
            vpos = np.flatnonzero(valid)
            has = cnt > 0
            last_i = max(len(vpos) - 1, 0)
            fi = vpos[np.minimum(np.searchsorted(vpos, starts), last_i)] if len(vpos) else starts
            li = vpos[np.maximum(np.searchsorted(vpos, ends) - 1, 0)] if len(vpos) else starts
    state = PaneStats(
        cnt, total, good, mean, m2, lo, hi,
        np.where(has, value[fi], 0.0), np.where(has, ts[fi], _TS_MAX), seq[fi],
        np.where(has, value[li], 0.0), np.where(has, ts[li], _TS_MIN), seq[li],
    )
    return ids[starts], panes[starts], state
