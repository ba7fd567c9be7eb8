"""Per asset: one record per machine and window with the features of all its analog tags.

Asset-level detectors score a machine as a whole (spindle temperature together with its
current and vibration), so they need every analog tag of the machine side by side for
one window. :class:`AssetWindow` is that record: a fixed matrix, one row per analog tag in
catalog order and one column per feature, NaN where a tag had no reading in the window.

Lifecycle: ``AssetIndex(catalog)``; ``records(frame)`` for every closed aggregate frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog

__all__ = ["FEATURES", "AssetIndex", "AssetWindow"]

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("count", "min", "max", "mean", "std", "first", "last",
                             "good_share")


@dataclass(frozen=True, slots=True)
class AssetWindow:
    """The analog tags of one machine over one window: ``values[tag, feature]``."""

    machine: str  # ISA-95 machine path
    window_start: int
    window_ms: int
    tags: tuple[str, ...]  # the machine's analog tags, catalog order
    values: npt.NDArray[np.float64]  # shape (len(tags), len(FEATURES)); NaN: no reading

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_ms

    def feature(self, name: str) -> npt.NDArray[np.float64]:
        """One feature across the machine's tags (NaN where a tag had no reading)."""
        return self.values[:, FEATURES.index(name)]

    def vector(self, features: tuple[str, ...] = ("mean", "std")) -> npt.NDArray[np.float64]:
        """The chosen features of every tag, flattened tag by tag: a detector's input."""
        cols = [FEATURES.index(f) for f in features]
        return self.values[:, cols].reshape(-1)


class AssetIndex:
    """Where each analog tag sits in its machine's record."""

    def __init__(self, catalog: Catalog) -> None:
        self._machines: dict[str, tuple[str, ...]] = {}
        self._where: dict[str, tuple[int, int]] = {}  # tag -> (machine number, row)
        for m in catalog.machines:
            path = catalog.machine_path(m)
            tags = tuple(catalog.tag_path(m, t) for t in m.tags if t.kind == "analog")
            if tags:
                number = len(self._machines)
                self._machines[path] = tags
                self._where.update({t: (number, i) for i, t in enumerate(tags)})
        self._paths = list(self._machines)
        # machine numbers in path order: records come out sorted by (start, machine path)
        order = sorted(range(len(self._paths)), key=self._paths.__getitem__)
        self._rank = np.empty(len(order), np.int64)
        self._rank[order] = np.arange(len(order))
        self._width = max((len(t) for t in self._machines.values()), default=1)
        # tag -> machine number * width + row: one int, looked up in C for a whole frame
        self._code = {t: m * self._width + i for t, (m, i) in self._where.items()}
        self._seen: dict[tuple[str, ...], npt.NDArray[np.int64]] = {}

    def _codes(self, tags: list[str]) -> npt.NDArray[np.int64]:
        """Each tag's place (machine number * width + row; -1: not an analog tag of a
        machine). A source's closed windows name the same tags time after time."""
        key = tuple(tags)
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= 1024:  # a bound, not a policy: tag sets rarely change
                self._seen.clear()
            found = self._seen[key] = np.fromiter(map(self._code.get, tags, repeat(-1)),
                                                  np.int64, len(tags))
        return found

    def records(self, frame: AggregateFrame,
                columns: Mapping[str, npt.NDArray[Any]] | None = None) -> list[AssetWindow]:
        """One record per (machine, window start) that has an analog tag in ``frame``;
        ``columns``, when given, are the frame's columns as arrays (saves converting)."""
        code = self._codes(frame.tag)
        rows = np.flatnonzero(code >= 0)
        if not len(rows):
            return []
        machine, pos = np.divmod(code[rows], self._width)
        cols = columns or {f: np.asarray(getattr(frame, f)) for f in (*FEATURES,
                                                                       "window_start")}
        start = np.asarray(cols["window_start"], np.int64)[rows]
        order = np.lexsort((self._rank[machine], start))
        rows, machine, pos, start = rows[order], machine[order], pos[order], start[order]
        edge = np.r_[True, (machine[1:] != machine[:-1]) | (start[1:] != start[:-1])]
        group = np.cumsum(edge) - 1
        values = np.full((int(group[-1]) + 1, self._width, len(FEATURES)), np.nan)
        values[group, pos] = np.column_stack(
            [np.asarray(cols[f], np.float64)[rows] for f in FEATURES])
        out = []
        for g, i in enumerate(np.flatnonzero(edge).tolist()):
            path = self._paths[int(machine[i])]
            tags = self._machines[path]
            out.append(AssetWindow(path, int(start[i]), frame.window_ms, tags,
                                   values[g, :len(tags)]))
        return out
