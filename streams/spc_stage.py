"""SPC inside the stream worker: the glue between :class:`streams.processor.FrameProcessor`
and the pure :class:`streams.spc.SpcEngine`.

SPC runs on the readings, in the worker's own agent, as one more step of processing a
frame, rather than as a Faust agent of its own. That way it sees each reading once (the
processor's sequence-number dedup has dropped redeliveries), its results go out through
the worker's producers (at-least-once: acknowledged before each checkpoint; exactly-once:
in the partition's transaction), and its state is part of each partition's checkpoint,
always at the same input offset as the windows. A second agent on the readings topic would
run at its own pace: its state could be behind or ahead of the offset a checkpoint
records, so a restart would chart some readings twice or never.

It reads the readings, not the window aggregates: a control chart plots each measured
value (individuals) or subgroups of consecutive values (X-bar-R), and a window's mean
mixes however many readings the window happened to hold into one point.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from schemas.catalog import Catalog
from schemas.spc_events import SpcCapability, SpcViolation
from streams.decode import DecodedFrame
from streams.spc import ChartOutput, SpcEngine

__all__ = ["SpcRecord", "SpcStage"]

logger = logging.getLogger(__name__)

SpcRecord = SpcViolation | SpcCapability


def _records(out: ChartOutput) -> list[SpcRecord]:
    for v in out.violations:
        logger.info("SPC violation: %s", v.message)
    return [*out.violations, *out.capabilities]


class SpcStage:
    """Lifecycle as the processor's: :meth:`observe` per decoded frame, :meth:`tick`,
    :meth:`flush`, and :meth:`snapshot`/:meth:`restore`/:meth:`drop` per partition."""

    def __init__(self, catalog: Catalog) -> None:
        self.engine = SpcEngine(catalog)

    def observe(self, frame: DecodedFrame, partition: int, now_ms: int) -> list[SpcRecord]:
        if not self.engine.watches(frame.source):
            return []
        charts = self.engine.charts
        idx = [i for i, t in enumerate(frame.tag) if t in charts]
        if not idx:
            return []
        sel = np.asarray(idx, dtype=np.intp)
        return _records(self.engine.observe([frame.tag[i] for i in idx], frame.ts[sel].tolist(),
                                            frame.value[sel].tolist(),
                                            frame.quality[sel].tolist(), now_ms, partition))

    def tick(self, now_ms: int, partition: int | None) -> list[SpcRecord]:
        return _records(self.engine.tick(now_ms, partition))

    def flush(self, now_ms: int, partition: int | None) -> list[SpcRecord]:
        return _records(self.engine.flush(now_ms, partition))

    def counters(self) -> dict[str, Any]:
        return self.engine.counters()

    def snapshot(self, partition: int | None) -> dict[str, Any]:
        return self.engine.snapshot(partition)

    def restore(self, snap: dict[str, Any], *, replace: bool) -> None:
        self.engine.restore(snap, replace=replace)

    def drop(self, partition: int) -> None:
        self.engine.drop(partition)
