"""Tumbling windows per tag, updated a frame at a time with NumPy.

Each (tag, window) keeps a :class:`Partial` — count, mean, M2 (sum of squared deviations),
min, max, first, last — and frames merge into it with Chan et al.'s parallel update, so
results do not depend on how readings were split into frames. Windows close by event
time: a per-source watermark (max source ts seen minus ``lateness_ms``); a window closes
when ``window_end <= watermark``. Readings for a closed window are late: counted, dropped.

Lifecycle: ``TumblingWindows(window_ms, lateness_ms)``; ``add(source, arrays)`` per frame
returns the aggregates that frame closed; ``close_idle(now_ms)`` on a timer;
``flush_all()`` on shutdown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from schemas.events import Aggregate
from schemas.readings import Quality

__all__ = ["AddResult", "Partial", "TumblingWindows", "aggregate_frame"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Partial:
    """Running statistics of one (tag, window): the aggregator state."""

    __slots__ = ("first", "first_ts", "last", "last_ts", "m2", "max", "mean", "min", "n")

    def __init__(self, n: int, mean: float, m2: float, lo: float, hi: float,
                 first: float, first_ts: int, last: float, last_ts: int) -> None:
        self.n, self.mean, self.m2, self.min, self.max = n, mean, m2, lo, hi
        self.first, self.first_ts, self.last, self.last_ts = first, first_ts, last, last_ts

    @classmethod
    def of(cls, value: float, ts: int) -> Partial:
        return cls(1, value, 0.0, value, value, value, ts, value, ts)

    def merge(self, o: Partial) -> None:
        """Fold ``o`` (readings that arrived later) into this partial, in place.

        Ties on timestamps go to arrival order: ``first`` keeps the earlier arrival,
        ``last`` takes the later one.
        """
        n = self.n + o.n
        delta = o.mean - self.mean
        self.mean += delta * o.n / n
        self.m2 += o.m2 + delta * delta * self.n * o.n / n
        self.n = n
        if o.min < self.min:
            self.min = o.min
        if o.max > self.max:
            self.max = o.max
        if o.first_ts < self.first_ts:
            self.first, self.first_ts = o.first, o.first_ts
        if o.last_ts >= self.last_ts:
            self.last, self.last_ts = o.last, o.last_ts

    def result(self, tag: str, window_start: int, window_ms: int) -> Aggregate:
        return Aggregate(
            tag=tag, window_start=window_start, window_end=window_start + window_ms,
            count=self.n, min=self.min, max=self.max, mean=self.mean,
            std=math.sqrt(max(self.m2, 0.0) / self.n), first=self.first, last=self.last,
        )


def aggregate_frame(
    ids: I64, ws: I64, ts: I64, value: F64
) -> tuple[I64, list[Partial]]:
    """Group valid readings by (tag id, window start) in one NumPy pass.

    Returns the index of the first reading of each group (into the inputs) and its
    partial. Within a group readings are ordered by ts, ties by position (stable sort).
    """
    order = np.lexsort((ts, ws, ids))
    k, w, t, v = ids[order], ws[order], ts[order], value[order]
    n = len(k)
    starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (w[1:] != w[:-1])])
    counts = np.diff(np.r_[starts, n])
    sums = np.add.reduceat(v, starts)
    means = sums / counts
    dev = v - np.repeat(means, counts)
    m2 = np.add.reduceat(dev * dev, starts)
    mins = np.minimum.reduceat(v, starts)
    maxs = np.maximum.reduceat(v, starts)
    ends = starts + counts - 1
    parts = [
        Partial(int(c), float(mu), float(q), float(lo), float(hi), float(fv), int(ft),
                float(lv), int(lt))
        for c, mu, q, lo, hi, fv, ft, lv, lt in zip(
            counts.tolist(), means.tolist(), m2.tolist(), mins.tolist(), maxs.tolist(),
            v[starts].tolist(), t[starts].tolist(), v[ends].tolist(), t[ends].tolist(),
            strict=True,
        )
    ]
    return order[starts], parts


@dataclass
class AddResult:
    """What one frame did to the windows."""

    closed: list[Aggregate] = field(default_factory=list)
    aggregated: int = 0
    late: int = 0
    bad_quality: int = 0


@dataclass
class _Source:
    watermark: int | None = None  # windows ending at or before it are closed
    max_ts: int | None = None
    last_seen_ms: int = 0  # processing time of the last frame
    open: dict[int, dict[int, Partial]] = field(default_factory=dict)  # ws -> tag id -> state


class TumblingWindows:
    """Open windows of every tag, grouped by the source whose watermark closes them."""

    def __init__(self, window_ms: int, lateness_ms: int) -> None:
        if window_ms <= 0 or lateness_ms < 0:
            raise ValueError(f"window_ms={window_ms} must be > 0 and lateness_ms >= 0")
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self._sources: dict[str, _Source] = {}
        self._tag_id: dict[str, int] = {}
        self._tags: list[str] = []

    def _ids(self, tags: Sequence[str]) -> I64:
        index = self._tag_id
        try:
            ids = [index[t] for t in tags]
        except KeyError:
            for t in tags:
                if t not in index:
                    index[t] = len(self._tags)
                    self._tags.append(t)
            ids = [index[t] for t in tags]
        return np.asarray(ids, dtype=np.int64)

    @property
    def open_windows(self) -> int:
        return sum(len(w) for s in self._sources.values() for w in s.open.values())

    def add(self, source: str, tags: Sequence[str], ts: I64, value: F64,
            quality: npt.NDArray[np.int8], now_ms: int = 0) -> AddResult:
        """Aggregate one frame of ``source`` and close the windows its watermark passed."""
        res = AddResult()
        n = len(tags)
        if n == 0:
            return res
        st = self._sources.get(source)
        if st is None:
            st = self._sources[source] = _Source()
        st.last_seen_ms = now_ms
        frame_max = int(ts.max())  # bad readings move event time too
        w = self.window_ms
        valid = (quality != Quality.BAD) & ~np.isnan(value)
        res.bad_quality = n - int(np.count_nonzero(valid))
        ws = ts - ts % w
        if st.watermark is not None:
            late = valid & (ws + w <= st.watermark)
            res.late = int(np.count_nonzero(late))
            valid &= ~late
        idx = np.flatnonzero(valid)
        if len(idx):
            ids = self._ids(tags)
            if len(idx) < n:
                ids, ws, ts, value = ids[idx], ws[idx], ts[idx], value[idx]
            first, parts = aggregate_frame(ids, ws, ts, value)
            for tag_id, start, part in zip(
                ids[first].tolist(), ws[first].tolist(), parts, strict=True
            ):
                bucket = st.open.get(start)
                if bucket is None:
                    bucket = st.open[start] = {}
                cur = bucket.get(tag_id)
                if cur is None:
                    bucket[tag_id] = part
                else:
                    cur.merge(part)
            res.aggregated = len(idx)
        if st.max_ts is None or frame_max > st.max_ts:
            st.max_ts = frame_max
        self._advance(st, st.max_ts - self.lateness_ms, res.closed)
        return res

    def _advance(self, st: _Source, watermark: int, out: list[Aggregate]) -> None:
        if st.watermark is not None and watermark <= st.watermark:
            return
        st.watermark = watermark
        w = self.window_ms
        for start in sorted(s for s in st.open if s + w <= watermark):
            bucket = st.open.pop(start)
            out.extend(
                bucket[i].result(self._tags[i], start, w)
                for i in sorted(bucket, key=self._tags.__getitem__)
            )

    def close_idle(self, now_ms: int, idle_ms: int | None = None) -> list[Aggregate]:
        """Close windows of sources silent for ``idle_ms`` of processing time.

        A silent source's event time is taken to move on with processing time, so its
        watermark becomes ``max_ts + (now - last frame) - lateness``.
        """
        idle = self.window_ms + self.lateness_ms if idle_ms is None else idle_ms
        out: list[Aggregate] = []
        for st in self._sources.values():
            silent = now_ms - st.last_seen_ms
            if st.max_ts is not None and st.open and silent >= idle:
                self._advance(st, st.max_ts + silent - self.lateness_ms, out)
        return out

    def flush_all(self) -> list[Aggregate]:
        """Close every open window (shutdown, tests); later readings for them are late."""
        out: list[Aggregate] = []
        for st in self._sources.values():
            if st.open:
                self._advance(st, max(st.open) + self.window_ms, out)
        return out
