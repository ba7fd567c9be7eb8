"""What the readings worker adds for the plant views: twin parts and KPI records.

:class:`PlantState` is the one hook :class:`streams.processor.FrameProcessor` calls per
frame (after its windows) and per timer tick. It numbers the frame's tags once and hands
the columns to :class:`streams.twin.TwinState` (every tag's last reading, machine state)
and :class:`streams.kpis.KpiEngine` (OEE and energy on event time). A machine whose KPIs
moved is sent to its twin again, with the running shift's OEE and energy.

State moves with the readings partition, like the windows: ``snapshot(partition)`` /
``restore`` / ``drop`` carry the partition's KPI tallies (:mod:`streams.kpi_state`), so a
restart or a rebalance does not lose the shift's OEE and energy so far. The twin's last
readings are not checkpointed: the frames replayed after the checkpoint and the next ones
rebuild them, and the merger keeps the published twin (:mod:`streams.twin_merge`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.catalog import Catalog
from schemas.kpis import KpiRecord
from streams.decode import DecodedFrame
from streams.kpi_state import restore_kpis, snapshot_kpis
from streams.kpis import KpiEngine
from streams.roles import PlantRoles
from streams.twin import TwinState
from streams.twin_inputs import TwinInput

__all__ = ["PlantState"]


class PlantState:
    """Lifecycle: ``PlantState(catalog)``; ``observe(frame, partition, now_ms)`` per frame
    (readings already deduplicated and checked); ``tick(now_ms, partition)`` on the timer;
    ``snapshot(partition)``/``restore(doc, partition)``/``drop(partition)`` with the
    processor's, when a checkpoint is taken or a partition moves."""

    def __init__(self, catalog: Catalog) -> None:
        self.roles = PlantRoles(catalog)
        self.twin = TwinState(catalog, self.roles)
        self.kpis = KpiEngine(catalog, self.roles)
        self.machines: dict[int, set[int]] = {}  # per readings partition, its machines
        self.sent = {"twin_parts": 0, "kpi_records": 0}

    def observe(self, frame: DecodedFrame, partition: int,
                now_ms: int) -> tuple[list[TwinInput], list[KpiRecord]]:
        ids = self.roles.ids(frame.tag)
        mine = self.machines.setdefault(partition, set())
        mine.update(np.unique(self.roles.machine_of[ids]).tolist())
        self.twin.observe(ids, frame.ts, frame.value, frame.quality, frame.seq, frame.text)
        kpis = self.kpis.observe(frame.source, partition, ids, frame.ts, frame.value,
                                 frame.quality, frame.seq, now_ms)
        return self._due(kpis, now_ms, mine)

    def tick(self, now_ms: int,
             partition: int | None = None) -> tuple[list[TwinInput], list[KpiRecord]]:
        """The timer, for one readings partition's machines (or all)."""
        mine = None if partition is None else self.machines.get(partition, set())
        return self._due(self.kpis.tick(now_ms, partition), now_ms, mine)

    def _due(self, kpis: list[KpiRecord], now_ms: int,
             machines: set[int] | None) -> tuple[list[TwinInput], list[KpiRecord]]:
        if kpis:
            by_path = self.roles.by_path
            self.twin.touch(by_path[k.machine].index for k in kpis)
        parts = self.twin.due(now_ms, self.kpis.summary, machines)
        self.sent["twin_parts"] += len(parts)
        self.sent["kpi_records"] += len(kpis)
        return parts, kpis

    def keep_partitions(self, partitions: set[int]) -> None:
        """After a rebalance: the readings partitions this worker owns now."""
        for p in {k[1] for k in self.kpis.streams} | set(self.machines):
            if p not in partitions:
                self.drop(p)

    def drop(self, partition: int) -> None:
        """Forget a readings partition (it moved to another worker, or its checkpoint is
        about to be restored): its KPI streams, and the twin parts still due for machines
        no other partition here carries."""
        self.kpis.drop(partition)
        gone = self.machines.pop(partition, set())
        self.twin.forget(gone - {m for ms in self.machines.values() for m in ms})

    def snapshot(self, partition: int | None = None, *, arrays: bool = False) -> dict[str, Any]:
        """The KPI state of one readings partition (or all) as plain data."""
        doc = snapshot_kpis(self.kpis, partition, arrays=arrays)
        picked = self.machines if partition is None else {
            partition: self.machines.get(partition, set())}
        paths = self.roles.machines
        doc["machines"] = {str(p): sorted(paths[m].path for m in ms) for p, ms in picked.items()}
        return doc

    def restore(self, doc: dict[str, Any] | None, partition: int | None = None,
                now_ms: int | None = None) -> None:
        """Take a :meth:`snapshot`: all state (``partition`` None), or one partition's after
        :meth:`drop`. ``None`` (a checkpoint from before the KPIs were saved) restores
        nothing: the partition's tallies start afresh."""
        if partition is None:
            self.kpis.streams.clear()
            self.kpis.timelines.clear()
            self.machines.clear()
        if doc is None:
            return
        restore_kpis(self.kpis, doc, now_ms)
        by_path = self.roles.by_path
        for p, paths in doc.get("machines", {}).items():
            self.machines.setdefault(int(p), set()).update(
                by_path[m].index for m in paths if m in by_path)

    def counters(self) -> dict[str, Any]:
        return {**self.sent, "kpi_late": self.kpis.late}
