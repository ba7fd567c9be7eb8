"""What the stream processor produces: the :class:`Output` of one message or timer tick,
and closed windows turned into columnar aggregate frames (:func:`frame_of`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.aggregates import AggregateFrame
from schemas.alarms import Alarm
from schemas.events import Aggregate, Anomaly, Command, DeadLetter
from schemas.kpis import KpiRecord
from schemas.late import LateReadings
from streams.assets import AssetIndex, AssetWindow
from streams.spc_stage import SpcRecord
from streams.twin_inputs import TwinInput
from streams.windows import Closed

__all__ = ["Output", "frame_of"]

logger = logging.getLogger(__name__)


@dataclass
class Output:
    """What processing one message (or a timer tick) produced, for the output topics."""

    aggregate_frames: list[AggregateFrame] = field(default_factory=list)  # every size
    primary: list[AggregateFrame] = field(default_factory=list)  # the first size, unchunked
    late: list[LateReadings] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)  # one per state change of an episode
    commands: list[Command] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    twin: list[TwinInput] = field(default_factory=list)  # to the twin-inputs topic
    kpis: list[KpiRecord] = field(default_factory=list)
    spc: list[SpcRecord] = field(default_factory=list)  # streams.spc_stage
    _aggregates: list[Aggregate] | None = field(default=None, repr=False)
    # closed windows whose asset records are built when someone asks for them
    _asset_parts: list[tuple[AssetIndex, AggregateFrame, dict[str, npt.NDArray[Any]]]] = (
        field(default_factory=list, repr=False))
    _assets: list[AssetWindow] | None = field(default=None, repr=False)

    @property
    def aggregates(self) -> list[Aggregate]:
        """The first size's windows one object each (built on first use: the worker
        itself sends the columnar frames, and only the tags with rules need objects)."""
        if self._aggregates is None:
            self._aggregates = [a for f in self.primary for a in f.aggregates()]
        return self._aggregates

    @aggregates.setter
    def aggregates(self, value: list[Aggregate]) -> None:
        self._aggregates = value

    @property
    def assets(self) -> list[AssetWindow]:
        """One record per machine and window of every size (built on first use: nothing
        in the worker reads them yet, and at 10,000 tags they are thousands a second)."""
        if self._assets is None:
            self._assets = [r for index, frame, cols in self._asset_parts
                            for r in index.records(frame, cols)]
        return self._assets

    @assets.setter
    def assets(self, value: list[AssetWindow]) -> None:
        self._assets = value

    def __bool__(self) -> bool:
        return bool(self.aggregate_frames or self.late or self.anomalies or self.alarms
                    or self.commands or self.deadletters or self.twin or self.kpis
                    or self.spc)


def frame_of(c: Closed) -> tuple[AggregateFrame, dict[str, npt.NDArray[Any]]] | None:
    """The closed windows with a value as a frame, and its columns as arrays."""
    s = c.stats
    with np.errstate(invalid="ignore", over="ignore"):
        std = np.sqrt(np.maximum(s.m2, 0.0) / np.maximum(s.n, 1))
        ok = (s.n > 0) & np.isfinite(s.mean) & np.isfinite(std)
    n_ok = int(np.count_nonzero(ok))
    bad = int(np.count_nonzero(s.n > 0)) - n_ok
    if bad:
        # finite readings near the float64 limit overflow the sums: such a window
        # cannot be encoded (JSON has no inf) and would poison the detector
        logger.warning("%d windows of %s dropped: their mean/std overflow float64 "
                       "(values of magnitude ~1e154 and above); check the tags' "
                       "scaling at the source", bad, c.source)
    if not n_ok:
        return None
    if n_ok == len(ok):
        tags, cols = c.tag, {
            "window_start": c.window_start, "count": s.n, "min": s.min, "max": s.max,
            "mean": s.mean, "std": std, "first": s.first, "last": s.last,
            "good_share": s.good / s.total}
    else:
        idx = np.flatnonzero(ok)
        tags = [c.tag[i] for i in idx.tolist()]
        cols = {"window_start": c.window_start[idx], "count": s.n[idx],
                "min": s.min[idx], "max": s.max[idx], "mean": s.mean[idx],
                "std": std[idx], "first": s.first[idx], "last": s.last[idx],
                "good_share": s.good[idx] / s.total[idx]}
    frame = AggregateFrame(
        c.source, c.window_ms, tags, cols["window_start"].tolist(),
        cols["count"].tolist(), cols["min"].tolist(), cols["max"].tolist(),
        cols["mean"].tolist(), cols["std"].tolist(), cols["first"].tolist(),
        cols["last"].tolist(), cols["good_share"].tolist())
    return frame, cols
