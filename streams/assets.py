"""Per asset: one record per machine and window with the features of all its analog tags.

Asset-level detectors score a machine as a whole (spindle temperature together with its
current and vibration), so they need every analog tag of the machine side by side for
one window. :class:`AssetWindow` is that record: a fixed matrix, one row per analog tag in
catalog order and one column per feature, NaN where a tag had no reading in the window.

Lifecycle: ``AssetIndex(catalog)``; ``records(frame)`` for every closed aggregate frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
        self._where: dict[str, tuple[str, int]] = {}
        for m in catalog.machines:
            path = catalog.machine_path(m)
            tags = tuple(catalog.tag_path(m, t) for t in m.tags if t.kind == "analog")
            if tags:
                self._machines[path] = tags
                self._where.update({t: (path, i) for i, t in enumerate(tags)})

    def records(self, frame: AggregateFrame) -> list[AssetWindow]:
        """One record per (machine, window start) that has an analog tag in ``frame``."""
        cols = np.column_stack([np.asarray(getattr(frame, f), np.float64)
                                for f in FEATURES]) if len(frame) else None
        acc: dict[tuple[str, int], npt.NDArray[np.float64]] = {}
        where = self._where
        for row, (tag, ws) in enumerate(zip(frame.tag, frame.window_start, strict=True)):
            hit = where.get(tag)
            if hit is None or cols is None:
                continue
            machine, i = hit
            values = acc.get((machine, ws))
            if values is None:
                values = acc[(machine, ws)] = np.full(
                    (len(self._machines[machine]), len(FEATURES)), np.nan)
            values[i] = cols[row]
        return [AssetWindow(m, ws, frame.window_ms, self._machines[m], v)
                for (m, ws), v in sorted(acc.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
