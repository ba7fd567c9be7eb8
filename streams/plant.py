"""What the readings worker adds for the plant views: twin parts and KPI records.

:class:`PlantState` is the one hook :class:`streams.processor.FrameProcessor` calls per
frame (after its windows) and per timer tick. It numbers the frame's tags once and hands
the columns to :class:`streams.twin.TwinState` (every tag's last reading, machine state)
and :class:`streams.kpis.KpiEngine` (OEE and energy on event time). A machine whose KPIs
moved is sent to its twin again, with the running shift's OEE and energy.
"""

from __future__ import annotations

from typing import Any

from schemas.catalog import Catalog
from schemas.kpis import KpiRecord
from streams.decode import DecodedFrame
from streams.kpis import KpiEngine
from streams.roles import PlantRoles
from streams.twin import TwinState
from streams.twin_inputs import TwinInput

__all__ = ["PlantState"]


class PlantState:
    """Lifecycle: ``PlantState(catalog)``; ``observe(frame, partition, now_ms)`` per frame
    (readings already deduplicated and checked); ``tick(now_ms)`` on the timer;
    ``keep_partitions(owned)`` after each rebalance."""

    def __init__(self, catalog: Catalog) -> None:
        self.roles = PlantRoles(catalog)
        self.twin = TwinState(catalog, self.roles)
        self.kpis = KpiEngine(catalog, self.roles)
        self.sent = {"twin_parts": 0, "kpi_records": 0}

    def observe(self, frame: DecodedFrame, partition: int,
                now_ms: int) -> tuple[list[TwinInput], list[KpiRecord]]:
        ids = self.roles.ids(frame.tag)
        self.twin.observe(ids, frame.ts, frame.value, frame.quality, frame.seq, frame.text)
        kpis = self.kpis.observe(frame.source, partition, ids, frame.ts, frame.value,
                                 frame.quality, frame.seq, now_ms)
        return self._due(kpis, now_ms)

    def tick(self, now_ms: int) -> tuple[list[TwinInput], list[KpiRecord]]:
        return self._due(self.kpis.tick(now_ms), now_ms)

    def _due(self, kpis: list[KpiRecord],
             now_ms: int) -> tuple[list[TwinInput], list[KpiRecord]]:
        if kpis:
            by_path = self.roles.by_path
            self.twin.touch(by_path[k.machine].index for k in kpis)
        parts = self.twin.due(now_ms, self.kpis.summary)
        self.sent["twin_parts"] += len(parts)
        self.sent["kpi_records"] += len(kpis)
        return parts, kpis

    def keep_partitions(self, partitions: set[int]) -> None:
        """After a rebalance: the readings partitions this worker owns now."""
        self.twin.forget(self.kpis.keep_partitions(partitions))

    def counters(self) -> dict[str, Any]:
        return {**self.sent, "kpi_late": self.kpis.late}
