"""SPC for every characteristic of the catalog: readings in, violations and capability out.

:class:`SpcEngine` holds one :class:`Chart` per ``spc.characteristics`` entry and feeds it
the GOOD readings of its tag, in the order they arrive. Frames of sources that carry no
characteristic are not looked at; in the others, one set lookup per reading picks the
charted ones. Pure logic: no Kafka, no clock (callers pass ``now_ms``).

State is kept per Kafka partition of the readings, the unit a worker checkpoints and hands
over: a chart belongs to the partition its tag's readings came in on.
:meth:`snapshot`/:meth:`restore`/:meth:`drop` take a partition. A saved chart whose
catalog entry has changed since (another chart, subgroup size, baseline, rules, limits or
``baseline_id``) is not restored: its limits are learnt again, which is how a baseline is
re-based from the catalog.

Lifecycle: ``SpcEngine(catalog)``; :meth:`observe` per frame; :meth:`tick` on a timer
(publishes the capability of shifts that ended); :meth:`flush` at the end of a run.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from schemas.catalog import Catalog
from schemas.spc import CharacteristicSpec
from streams.shifts import ShiftCalendar
from streams.spc.capability import Shift
from streams.spc.chart import Chart, ChartOutput

__all__ = ["SHIFT_GRACE_MS", "SpcEngine"]

logger = logging.getLogger(__name__)

SHIFT_GRACE_MS = 60_000  # a shift's capability waits this long for its stragglers
GOOD = 0
STATE_VERSION = 1


class SpcEngine:
    def __init__(self, catalog: Catalog, *, grace_ms: int = SHIFT_GRACE_MS) -> None:
        spc = catalog.spc
        self.calendar = ShiftCalendar(catalog.kpis)  # the plant's shifts (kpis.shifts)
        self.min_points = spc.min_capability_points
        self.grace_ms = grace_ms
        self.specs: dict[str, CharacteristicSpec] = {}
        self.charts: dict[str, Chart] = {}
        self.sources: set[str] = set()
        for c in spc.characteristics:
            info = catalog.info(c.tag)
            self.specs[info.path] = c
            self.charts[info.path] = self._new(info.path)
            self.sources.add(info.source.name)
        self.partition_of: dict[str, int] = {}  # tag -> the partition its readings came on
        self.count: Counter[str] = Counter()

    def _new(self, tag: str) -> Chart:
        return Chart(tag, self.specs[tag], self._shift_of, self.min_points)

    def _shift_of(self, ts: int) -> Shift | None:
        slot = self.calendar.at(ts)
        return None if slot is None else Shift(slot.name, slot.start, slot.end)

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self.charts)

    def watches(self, source: str) -> bool:
        """Whether frames of ``source`` may carry a characteristic's readings."""
        return source in self.sources

    def observe(self, tags: Sequence[str], ts: Sequence[int], values: Sequence[float | None],
                quality: Sequence[int], now_ms: int, partition: int = 0) -> ChartOutput:
        """Chart the readings of the characteristics' tags among these (parallel lists);
        BAD or UNCERTAIN readings and readings without a finite value are not charted
        (counted as ``not_good``)."""
        out = ChartOutput()
        charts = self.charts
        picked = [i for i, t in enumerate(tags) if t in charts]
        for i in picked:
            tag = tags[i]
            self.partition_of[tag] = partition
            v = values[i]
            if quality[i] != GOOD or v is None or not math.isfinite(v):
                self.count["not_good"] += 1
                continue
            self.count["points"] += 1
            out.extend(charts[tag].add(int(ts[i]), float(v), now_ms))
        self._count(out)
        return out

    def _mine(self, partition: int | None) -> list[Chart]:
        if partition is None:
            return list(self.charts.values())
        return [self.charts[t] for t, p in self.partition_of.items() if p == partition]

    def tick(self, now_ms: int, partition: int | None = None) -> ChartOutput:
        out = ChartOutput()
        for chart in self._mine(partition):
            out.capabilities.extend(chart.close_shifts(now_ms, self.grace_ms))
        self._count(out)
        return out

    def flush(self, now_ms: int, partition: int | None = None) -> ChartOutput:
        out = ChartOutput()
        for chart in self._mine(partition):
            out.capabilities.extend(chart.flush(now_ms))
        self._count(out)
        return out

    def rebase(self, tag: str) -> None:
        """Learn new limits for ``tag`` (its full path) from its next baseline points."""
        self.charts[tag].rebase()

    def _count(self, out: ChartOutput) -> None:
        self.count["violations"] += len(out.violations)
        self.count["capabilities"] += len(out.capabilities)

    def counters(self) -> dict[str, Any]:
        return {**{k: self.count[k] for k in ("points", "not_good", "violations",
                                               "capabilities")},
                "skipped": sum(c.skipped for c in self.charts.values()),
                "frozen": sum(c.limits is not None for c in self.charts.values())}

    # -- state ------------------------------------------------------------------------------
    def snapshot(self, partition: int | None = None) -> dict[str, Any]:
        """The charts of ``partition`` (or all) as plain data, each with its catalog entry."""
        tags = [t for t, p in self.partition_of.items() if partition is None or p == partition]
        return {"version": STATE_VERSION,
                "charts": {t: {"partition": self.partition_of[t],
                               "spec": self.specs[t].model_dump(mode="json"),
                               "state": self.charts[t].to_dict()} for t in sorted(tags)}}

    def restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Take a :meth:`snapshot`, instead of all state (``replace``) or besides it. Charts
        of tags no longer charted, or whose catalog entry changed, start afresh."""
        if replace:
            for tag in list(self.partition_of):
                self.charts[tag] = self._new(tag)
            self.partition_of.clear()
        if snap.get("version") != STATE_VERSION:
            if snap:
                logger.warning("SPC state of layout %s ignored (this worker reads layout %d): "
                               "the charts learn their limits again", snap.get("version"),
                               STATE_VERSION)
            return
        for tag, doc in snap["charts"].items():
            spec = self.specs.get(tag)
            if spec is None:
                continue
            if doc["spec"] != spec.model_dump(mode="json"):
                logger.warning("SPC %s: its catalog entry changed since the checkpoint; its "
                               "limits are learnt again from the next %d points", tag,
                               spec.baseline_points)
                continue
            chart = self._new(tag)
            chart.load(doc["state"])
            self.charts[tag] = chart
            self.partition_of[tag] = int(doc["partition"])

    def drop(self, partition: int) -> None:
        """Forget the charts of ``partition`` (it moved to another worker)."""
        for tag in [t for t, p in self.partition_of.items() if p == partition]:
            self.charts[tag] = self._new(tag)
            del self.partition_of[tag]
