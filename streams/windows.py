"""Tumbling and hopping windows of several sizes per tag, updated a frame at a time.

State is kept per (source, partition): a :class:`Watermark` and, per pane size, the open
panes as columnar :class:`PaneStats` (one row per tag of the source). A tumbling window is
one pane; a hopping window (size, hop) is the merge of its size/hop panes of one hop each,
so a reading is added once per pane size however many windows overlap it. A window closes
when its end is at or before the watermark. A reading whose window of some size has closed
is *late* for that size: it still counts in the larger windows that are open, and the
caller routes it (``AddResult.late``). Windows close in start order per size.

Frames are folded into the panes in batches: a frame whose readings all fall in open
panes waits in its stream's pending list until a window boundary passes the watermark (or
``max_pending`` readings wait), then the batch is sorted and grouped once per pane size.
Nothing can close or turn late between two boundaries, so the result is the same as
folding every frame at once; per reading it costs a fraction, since NumPy's fixed cost
per call is paid per batch, not per frame.

All state is plain data: :meth:`WindowStore.snapshot` gives dicts of lists (or of NumPy
arrays) and :meth:`WindowStore.restore` rebuilds the store from one, for state persistence;
both work on all streams or on one Kafka partition's, which is the unit that moves between
workers. A snapshot carries the frames still waiting to be folded as they are
(:mod:`streams.pending`), so a restored stream folds the same batches as the original.

Lifecycle: ``WindowStore(specs, lateness_ms, idle_ms)``; ``add(...)`` per frame;
``close_idle(now_ms)`` on a timer; ``flush_all()`` on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.catalog import WindowSpec
from schemas.readings import Quality
from streams.panes import F64, I64, PaneStats, group_frame, merge, sort_frame
from streams.pending import Batch, batch_from_doc, batch_to_doc, concat
from streams.watermarks import Watermark

__all__ = ["AddResult", "Closed", "StreamKey", "WindowStore"]

logger = logging.getLogger(__name__)

StreamKey = tuple[str, int]  # (source, partition)


@dataclass(slots=True)
class Closed:
    """Windows of one size of one stream that closed together: one row per (tag, start),
    rows with at least one reading (possibly only BAD ones: ``stats.n == 0``)."""

    source: str
    partition: int
    window_ms: int
    tag: list[str]
    window_start: I64
    stats: PaneStats


@dataclass(slots=True)
class AddResult:
    """What one frame did: windows it closed, readings aggregated, late ones."""

    closed: list[Closed] = field(default_factory=list)
    aggregated: int = 0  # readings that entered at least one window
    bad_quality: int = 0  # BAD or valueless readings (they count only in good_share)
    late: npt.NDArray[np.bool_] | None = None  # per reading: missed a closed window
    missed_ms: list[list[int]] = field(default_factory=list)  # per late reading: sizes


@dataclass(slots=True)
class _Stream:
    wm: Watermark
    tags: list[str] = field(default_factory=list)
    slot: dict[str, int] = field(default_factory=dict)
    panes: dict[int, dict[int, PaneStats]] = field(default_factory=dict)  # pane_ms -> start
    # frames not yet folded into the panes: (slot, ts, seq, value, quality, valid)
    pending: list[Batch] = field(default_factory=list)
    pending_n: int = 0
    # the last frame's tag list and its slots: connectors send the same tags frame
    # after frame, and a list compared (or recognised by identity) is cheaper than a
    # dictionary lookup per reading
    last_tags: Sequence[str] | None = None
    last_ids: I64 | None = None

    def slots(self, tags: Sequence[str]) -> I64:
        if self.last_ids is not None and (tags is self.last_tags or tags == self.last_tags):
            return self.last_ids
        index = self.slot
        try:
            ids = [index[t] for t in tags]
        except KeyError:
            for t in tags:
                if t not in index:
                    index[t] = len(self.tags)
                    self.tags.append(t)
            ids = [index[t] for t in tags]
        self.last_tags, self.last_ids = tags, np.asarray(ids, dtype=np.int64)
        return self.last_ids


class WindowStore:
    """Open windows of every configured size for every (source, partition)."""

    def __init__(self, specs: Sequence[WindowSpec], lateness_ms: int,
                 idle_ms: int | None = None, max_pending: int = 65_536) -> None:
        if not specs or lateness_ms < 0:
            raise ValueError(f"need at least one window and lateness_ms >= 0, got "
                             f"{list(specs)} and {lateness_ms}")
        self.specs = list(specs)
        self.lateness_ms = lateness_ms
        self.idle_ms = specs[0].size_ms + lateness_ms if idle_ms is None else idle_ms
        # per pane size, the longest window built from it: its panes live that long
        self._keep: dict[int, int] = {}
        for s in self.specs:
            self._keep[s.pane_ms] = max(self._keep.get(s.pane_ms, 0), s.size_ms)
        self.max_pending = max_pending
        self._streams: dict[StreamKey, _Stream] = {}

    @property
    def open_windows(self) -> int:
        """Open panes, counting those that frames still waiting to be folded will open."""
        total = 0
        for st in self._streams.values():
            for pane_ms in self._keep:
                starts = set(st.panes.get(pane_ms, ()))
                for b in st.pending:
                    lo, hi = int(b[1].min()), int(b[1].max())
                    starts.update(range(lo - lo % pane_ms, hi - hi % pane_ms + 1, pane_ms))
                total += len(starts)
        return total

    def watermark(self, key: StreamKey) -> int | None:
        st = self._streams.get(key)
        return None if st is None else st.wm.value

    def add(self, key: StreamKey, tags: Sequence[str], ts: I64, value: F64,
            quality: npt.NDArray[np.int8], seq: I64, now_ms: int = 0) -> AddResult:
        """Aggregate one frame's readings and close the windows its watermark passed."""
        res = AddResult()
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(Watermark(self.lateness_ms))
        if len(tags) == 0:
            st.wm.observe(None, now_ms)
            return res
        valid = (quality != Quality.BAD) & ~np.isnan(value)
        res.bad_quality = len(tags) - int(np.count_nonzero(valid))
        wm = st.wm.value
        ids = st.slots(tags)
        lo, hi = int(ts.min()), int(ts.max())
        if wm is None or all(lo - lo % p + p > wm for p in self._keep):
            # no reading is late for any size (every pane's first window is open): wait
            res.aggregated = len(ids)
            st.pending.append((ids, ts, seq, value, quality, valid))
            st.pending_n += len(ids)
        else:
            self._absorb(st)
            self._add_now(st, wm, res, ids, ts, seq, value, quality, valid)
        before = st.wm.value
        if st.wm.observe(hi, now_ms) is not None and self._crossed(before, st.wm.value):
            self._absorb(st)
            self._close(key, st, before, res.closed)
        elif st.pending_n >= self.max_pending:
            self._absorb(st)
        return res

    def _crossed(self, before: int | None, after: int | None) -> bool:
        """Whether the watermark passed a pane boundary: windows start and end, and
        panes expire, only on those, so between two nothing closes."""
        if before is None or after is None:
            return True
        return any(before // p != after // p for p in self._keep)

    def _add_now(self, st: _Stream, wm: int, res: AddResult, ids: I64, ts: I64, seq: I64,
                 value: F64, quality: npt.NDArray[np.int8], valid: npt.NDArray[np.bool_],
                 ) -> None:
        """Fold a frame with readings late for some size at once, each reading into the
        sizes whose windows of it are still open; flag the late ones."""
        order = sort_frame(ids, ts, seq)
        ids, ts, seq = ids[order], ts[order], seq[order]
        value, quality, valid = value[order], quality[order], valid[order]
        entered = np.zeros(len(ids), bool)
        late = np.zeros(len(ids), bool)
        for pane_ms, keep in self._keep.items():
            pane = ts - ts % pane_ms
            late |= pane + pane_ms <= wm  # its earliest window of this pane has closed
            ok = pane + keep > wm  # some window of this pane is still open
            entered |= ok
            cols = (ids, ts, seq, value, quality, valid)
            if not ok.all():
                cols = tuple(c[ok] for c in cols)  # type: ignore[assignment]
                if not len(cols[0]):
                    continue
            gid, gstart, stats = group_frame(*cols, pane_ms)
            self._fold(st, pane_ms, gid, gstart, stats)
        res.aggregated = int(np.count_nonzero(entered))
        if late.any():
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            res.late = late[back]
            lt = ts[late]
            res.missed_ms = [[s.size_ms for s in self.specs
                              if (t - t % s.pane_ms) + s.pane_ms <= wm]
                             for t in lt[np.argsort(order[late])].tolist()]

    def _absorb(self, st: _Stream) -> None:
        """Fold the waiting frames into the panes: one sort, one grouping per size."""
        if not st.pending:
            return
        ids, ts, seq, value, quality, valid = concat(st.pending)
        st.pending, st.pending_n = [], 0
        order = sort_frame(ids, ts, seq)
        cols = (ids[order], ts[order], seq[order], value[order], quality[order],
                valid[order])
        for pane_ms in self._keep:
            gid, gstart, stats = group_frame(*cols, pane_ms)
            self._fold(st, pane_ms, gid, gstart, stats)

    def _fold(self, st: _Stream, pane_ms: int, gid: I64, gstart: I64,
              stats: PaneStats) -> None:
        level = st.panes.setdefault(pane_ms, {})
        rows = len(st.tags)
        lo = int(gstart.min())
        starts = [lo] if lo == int(gstart.max()) else np.unique(gstart).tolist()
        for start in starts:
            ids, part = gid, stats
            if len(starts) > 1:
                pick = np.flatnonzero(gstart == start)
                ids, part = gid[pick], stats.take(pick)
            pane = level.get(start)
            if pane is None:  # a new pane: the frame's groups are its state
                pane = level[start] = PaneStats.empty(rows)
                pane.put(ids, part)
                continue
            if len(pane) < rows:
                pane.grow(rows)
            pane.merge_at(ids, part)

    def _close(self, key: StreamKey, st: _Stream, before: int | None,
               out: list[Closed]) -> None:
        """Emit the windows whose end the watermark passed since ``before``: each window
        closes exactly once, and a late reading never reopens one."""
        wm = st.wm.value
        if wm is None:
            return
        for spec in self.specs:
            level = st.panes.get(spec.pane_ms, {})
            size = spec.size_ms
            starts: set[int] = set()
            for p in level:  # windows that contain a pane with data
                for s in range(p - size + spec.pane_ms, p + 1, spec.pane_ms):
                    if s + size <= wm and (before is None or s + size > before):
                        starts.add(s)
            if starts:
                out.extend(self._emit(key, st, spec, sorted(starts)))
        for pane_ms, keep in self._keep.items():
            level = st.panes.get(pane_ms, {})
            for p in [p for p in level if p + keep <= wm]:
                del level[p]

    def _emit(self, key: StreamKey, st: _Stream, spec: WindowSpec,
              starts: list[int]) -> list[Closed]:
        level = st.panes[spec.pane_ms]
        rows = len(st.tags)
        out: list[Closed] = []
        for s in starts:
            acc: PaneStats | None = None
            for p in range(s, s + spec.size_ms, spec.pane_ms):
                pane = level.get(p)
                if pane is None:
                    continue
                pane.grow(rows)
                acc = pane if acc is None else merge(acc, pane)
            if acc is None:
                continue
            idx = np.flatnonzero(acc.total > 0)
            out.append(Closed(key[0], key[1], spec.size_ms,
                              [st.tags[i] for i in idx.tolist()],
                              np.full(len(idx), s, np.int64), acc.take(idx)))
        return out

    def close_idle(self, now_ms: int, partition: int | None = None) -> list[Closed]:
        """Close windows of streams silent for ``idle_ms`` of processing time (of one
        partition's streams, or of all)."""
        out: list[Closed] = []
        for key, st in self._streams.items():
            if partition is not None and key[1] != partition:
                continue
            before = st.wm.value
            if ((st.pending or any(st.panes.values()))
                    and st.wm.idle(now_ms, self.idle_ms) is not None):
                self._absorb(st)
                self._close(key, st, before, out)
        return out

    def flush_all(self, partition: int | None = None) -> list[Closed]:
        """Close every open window (of one partition's streams, or of all), as at the end
        of a run; later readings for them are late."""
        out: list[Closed] = []
        longest = max(self._keep.values())
        for key, st in self._streams.items():
            if partition is not None and key[1] != partition:
                continue
            self._absorb(st)
            top = max((p for lv in st.panes.values() for p in lv), default=None)
            if top is not None:
                before = st.wm.value
                st.wm.force(top + longest)
                self._close(key, st, before, out)
        return out

    # -- persistence --------------------------------------------------------------------
    def keys(self, partition: int | None = None) -> list[StreamKey]:
        """The (source, partition) streams held, of one partition or all."""
        return [k for k in self._streams if partition is None or k[1] == partition]

    def tags(self, partition: int | None = None) -> set[str]:
        """Every tag the streams of ``partition`` (or of all partitions) have seen."""
        return {t for k in self.keys(partition) for t in self._streams[k].tags}

    def snapshot(self, partition: int | None = None, *, arrays: bool = False) -> dict[str, Any]:
        """The state of one partition's streams (or all) as plain data: dicts, lists and
        numbers, strict JSON; with ``arrays`` the pane columns stay NumPy arrays (for a
        binary encoding, see :mod:`streams.state`). Encode it before the next ``add``:
        the arrays are the live ones, not copies."""
        return {"streams": [
            {"source": k[0], "partition": k[1], "watermark": st.wm.to_dict(),
             "tags": list(st.tags),
             "panes": {str(ms): {str(p): pane.to_arrays() if arrays else pane.to_dict()
                                 for p, pane in lv.items()}
                       for ms, lv in st.panes.items()},
             "pending": batch_to_doc(st.pending, arrays=arrays)}
            for k, st in self._streams.items() if partition is None or k[1] == partition]}

    def restore(self, snap: dict[str, Any], partition: int | None = None,
                now_ms: int | None = None) -> None:
        """Replace the state by a :meth:`snapshot` (same window configuration): all of it,
        or only the streams of ``partition`` (the others are kept). With ``now_ms`` (this
        worker's clock) the streams count as just seen: the time the partition spent
        between workers is not silence of its sources, and must not close their windows
        by the idle timeout before the frames that were sent meanwhile are read."""
        if partition is None:
            self._streams = {}
        else:
            self.drop(partition)
        for doc in snap["streams"]:
            st = _Stream(Watermark.from_dict(doc["watermark"]), list(doc["tags"]))
            if now_ms is not None:
                st.wm.last_seen_ms = now_ms
            st.slot = {t: i for i, t in enumerate(st.tags)}
            st.panes = {int(ms): {int(p): PaneStats.from_dict(pane) for p, pane in lv.items()}
                        for ms, lv in doc["panes"].items()}
            if doc.get("pending"):  # absent in snapshots of layout 1
                st.pending = [batch_from_doc(doc["pending"])]
                st.pending_n = len(st.pending[0][0])
            self._streams[(doc["source"], int(doc["partition"]))] = st

    def touch(self, partition: int, now_ms: int) -> None:
        """Count the streams of ``partition`` as seen at ``now_ms``: after a pause of the
        consumer (a rebalance), which is not silence of the sources."""
        for key in self.keys(partition):
            self._streams[key].wm.last_seen_ms = now_ms

    def drop(self, partition: int) -> None:
        """Forget the streams of ``partition`` (it moved to another worker)."""
        for key in self.keys(partition):
            del self._streams[key]
