"""Where each tag of one source sits in the detectors' arrays, and one window as arrays.

The detectors of a source see its analog tags machine by machine (so that a machine's
tags are one contiguous slice), each with the window features ``FEATURES``. One closed
window becomes a :class:`WindowMatrix`: ``values[tag, feature]``, which tags had readings,
their good-quality share, and the machines' run state. Sources that report by exception
(OPC-UA subscriptions, MQTT/Sparkplug B) send nothing while a value does not change, so a
tag without readings in a window *held its value*: it gets the last value it had (std 0),
which is what lets a stuck sensor be seen at all. A polled source (Modbus) has no such
rule: a missing tag is missing. A source that is not in the catalog (its frames' tags are)
covers the tags of its first closed frame (``seen``), with no holding: nothing says how it
reports.

Lifecycle: ``SourceLayout(catalog, source)``; ``windows(frame, bad_tags)`` per closed
frame of the first window size; ``snapshot()``/``restore()`` for the held values.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from streams.detectors.base import B8, F64

__all__ = ["FEATURES", "SourceLayout", "WindowMatrix"]

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("mean", "std", "min", "max", "first", "last")
_BY_EXCEPTION = frozenset({"opcua", "mqtt"})


@dataclass(frozen=True, slots=True)
class WindowMatrix:
    """One window of one source: every analog tag's features (NaN: no value)."""

    window_start: int
    window_end: int
    values: F64  # (n_tags, len(FEATURES))
    present: B8  # a reading, or a held value, in this window
    held: B8  # present only because its value was held
    good_share: F64  # (n_tags,) GOOD readings / all readings; NaN when absent
    run_value: dict[int, float]  # machine index -> its run-state tag's last value

    def column(self, feature: str) -> F64:
        return self.values[:, FEATURES.index(feature)]


class SourceLayout:
    """The analog tags of one source's machines, machine by machine, and their held values."""

    def __init__(self, catalog: Catalog, source: str, seen: Collection[str] = ()) -> None:
        known = any(s.name == source for s in catalog.sources)
        self.source = source
        self.by_exception = known and catalog.source(source).protocol in _BY_EXCEPTION
        only = None if known else frozenset(seen)
        if not known:
            logger.warning("source %s is not in the catalog: its detectors cover the %d "
                           "tags of its first window; name it under sources: so that they "
                           "cover its machines' tags", source, len(only or ()))
        self.tags: list[str] = []
        self.names: list[str] = []  # short tag names, for messages
        self.machines: list[str] = []  # machine paths, in order
        self.machine_names: list[str] = []
        starts: list[int] = []
        self._code: dict[str, int] = {}  # analog tag -> index >= 0; run tag -> -2 - machine
        run = catalog.alarms.run_state
        for m in catalog.machines_of(source) if known else catalog.machines:
            analog = [t for t in m.tags if t.kind == "analog"
                      and (only is None or catalog.tag_path(m, t) in only)]
            if not analog:
                continue
            k = len(self.machines)
            self.machines.append(catalog.machine_path(m))
            self.machine_names.append(m.name)
            starts.append(len(self.tags))
            for t in analog:
                self._code[catalog.tag_path(m, t)] = len(self.tags)
                self.tags.append(catalog.tag_path(m, t))
                self.names.append(t.name)
            if run is not None and any(t.name == run.tag for t in m.tags):
                self._code[f"{catalog.machine_path(m)}/{run.tag}"] = -2 - k
        self.starts = np.asarray(starts, dtype=np.int64)  # first tag of each machine
        self.machine_of = np.repeat(np.arange(len(self.machines)),
                                    np.diff(np.append(self.starts, len(self.tags))))
        n = len(self.tags)
        self.last = np.full(n, np.nan)  # each tag's last value (for holding)
        self.last_good = np.full(n, np.nan)

    def __len__(self) -> int:
        return len(self.tags)

    def windows(self, frame: AggregateFrame, bad_tags: frozenset[str] = frozenset()
                ) -> list[WindowMatrix]:
        """The frame's windows in start order. ``bad_tags`` had only BAD readings in the
        frame's windows: they are not held (their value is unknown, not unchanged)."""
        if not len(frame) or not len(self.tags):
            return []
        code = np.fromiter((self._code.get(t, -1) for t in frame.tag), np.int64, len(frame))
        starts = np.asarray(frame.window_start, dtype=np.int64)
        cols = np.column_stack([np.asarray(getattr(frame, f), np.float64) for f in FEATURES])
        good = np.asarray(frame.good_share, np.float64)
        last_col = np.asarray(frame.last, np.float64)
        bad = np.zeros(len(self.tags), dtype=bool)
        for t in bad_tags:
            i = self._code.get(t, -1)
            if i >= 0:
                bad[i] = True
        out = []
        for ws in np.unique(starts).tolist():
            rows = np.flatnonzero(starts == ws)
            c = code[rows]
            tag_rows, tag_idx = rows[c >= 0], c[c >= 0]
            values = np.full((len(self.tags), len(FEATURES)), np.nan)
            values[tag_idx] = cols[tag_rows]
            share = np.full(len(self.tags), np.nan)
            share[tag_idx] = good[tag_rows]
            present = np.zeros(len(self.tags), dtype=bool)
            present[tag_idx] = True
            held = np.zeros(len(self.tags), dtype=bool)
            if self.by_exception:
                held = ~present & ~bad & np.isfinite(self.last)
                if held.any():
                    values[held] = self.last[held, None]
                    values[held, FEATURES.index("std")] = 0.0
                    share[held] = self.last_good[held]
                    present |= held
            self.last[tag_idx] = last_col[tag_rows]
            self.last_good[tag_idx] = good[tag_rows]
            self.last[bad] = np.nan
            run = {-2 - int(k): float(last_col[r]) for r, k in zip(rows[c <= -2], c[c <= -2],
                                                                   strict=True)}
            out.append(WindowMatrix(ws, ws + frame.window_ms, values, present, held, share,
                                    run))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "last": self.last.tolist(),
                "last_good": self.last_good.tolist()}

    def restore(self, snap: dict[str, Any]) -> None:
        """Held values of the tags still in the layout (a catalog may have changed)."""
        where = {t: i for i, t in enumerate(snap["tags"])}
        for i, t in enumerate(self.tags):
            j = where.get(t)
            if j is not None:
                self.last[i] = snap["last"][j]
                self.last_good[i] = snap["last_good"][j]
