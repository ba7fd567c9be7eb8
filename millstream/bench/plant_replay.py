"""The simulated plant through the worker's logic, faster than real time, without servers.

:func:`replay` steps the simulator's physics (:class:`Plant`, with a fault plan) and turns
its values into reading frames the way the connectors would: each catalog source samples
at its ``interval_ms``; OPC-UA and MQTT sources report by exception (a value that did not
change sends nothing), Modbus is polled (every value, every poll). The frames, encoded,
go through the same :class:`FrameProcessor` the worker runs (windows, detectors, alarm
engine, rules), on simulated time, and the commands the rules issue are applied to the
plant's setpoints, as the executor would. :func:`score_faults` then matches the alarm
episodes against the fault plan: what was detected, how fast, how many episodes each, and
the episodes outside any fault. This is the core of ``bench alarms`` and of the figures in
the README's "Anomalies and alarms".
"""

from __future__ import annotations

import bisect
import logging
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from connectors.simulator.faults import Fault, FaultPlan
from connectors.simulator.plant import Plant
from schemas.alarms import Alarm
from schemas.catalog import Catalog
from schemas.events import Anomaly
from schemas.readings import FrameBuilder, ReadingFrame
from streams.processor import FrameProcessor

__all__ = ["T0_MS", "Replay", "match_faults", "plant_frames", "replay", "score_faults"]

logger = logging.getLogger(__name__)

T0_MS = 1_763_760_000_000  # simulated time 0
_BY_EXCEPTION = frozenset({"opcua", "mqtt"})


@dataclass
class Replay:
    """What came out of a replay, stamped in simulated time."""

    catalog: Catalog
    plan: FaultPlan
    duration_s: float
    anomalies: list[Anomaly] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)  # every record (state change)
    commands: int = 0
    processor: FrameProcessor | None = None

    def episodes(self) -> dict[str, list[Alarm]]:
        """Each episode's records, by alarm id, in order."""
        out: dict[str, list[Alarm]] = defaultdict(list)
        for a in self.alarms:
            out[a.alarm_id].append(a)
        return dict(out)


def plant_frames(plant: Plant, duration_s: float, *, t0_ms: int = T0_MS, dt: float = 0.1,
                 frame_s: float = 0.5) -> Iterator[tuple[int, list[ReadingFrame]]]:
    """Step ``plant`` for ``duration_s`` simulated seconds; every ``frame_s`` the frames
    each source would have published meanwhile, with the simulated time (Unix ms)."""
    catalog = plant.catalog
    infos = catalog.tags()
    builders = {s.name: FrameBuilder(s.name, epoch=1, max_readings=100_000)
                for s in catalog.sources}
    period = {s.name: max(1, round(s.interval_ms / 1000 / dt)) for s in catalog.sources}
    exception = {s.name: s.protocol in _BY_EXCEPTION for s in catalog.sources}
    sent: dict[str, float] = {}
    per_frame = max(1, round(frame_s / dt))
    for step in range(1, round(duration_s / dt) + 1):
        values = plant.step(dt)
        ts = t0_ms + round(plant.t * 1000)
        for path, v in values.items():
            info = infos[path]
            src = info.source.name
            if step % period[src] or info.spec.kind == "text":
                continue
            if exception[src] and sent.get(path) == v:
                continue
            sent[path] = v
            builders[src].add(path, ts, v)
        if step % per_frame == 0:
            yield ts, [f for b in builders.values() if (f := b.flush()) is not None]


def replay(catalog: Catalog, plan: FaultPlan, duration_s: float, *, seed: int = 7,
           dt: float = 0.1, frame_s: float = 0.5, apply_commands: bool = True,
           processor: FrameProcessor | None = None,
           progress: Callable[[float], None] | None = None) -> Replay:
    """Run the plant for ``duration_s`` simulated seconds through a FrameProcessor;
    ``progress``, if given, is called with the simulated seconds done once a simulated
    minute."""
    plant = Plant(catalog, seed=seed, faults=plan)
    proc = processor or FrameProcessor(catalog)
    out = Replay(catalog, plan, duration_s, processor=proc)
    ts = T0_MS
    minute = max(1, round(60 / frame_s))
    for n, (ts, frames) in enumerate(plant_frames(plant, duration_s, dt=dt,
                                                   frame_s=frame_s)):
        for frame in frames:
            _take(out, plant, proc.process(frame.key(), frame.encode(), "replay", 0, n,
                                           ts + 50), apply_commands)
        _take(out, plant, proc.tick(ts + 50), apply_commands)
        if progress is not None and (n + 1) % minute == 0:
            progress((ts - T0_MS) / 1000)
    _take(out, plant, proc.flush(ts + 50), apply_commands)
    return out


def _take(out: Replay, plant: Plant, result: Any, apply_commands: bool) -> None:
    out.anomalies += result.anomalies
    out.alarms += result.alarms
    out.commands += len(result.commands)
    if apply_commands:
        for cmd in result.commands:
            plant.set_setpoint(cmd.setpoint, cmd.value)


def _fault_window(f: Fault, grace_s: float) -> tuple[int, int]:
    return T0_MS + round(f.start_s * 1000), T0_MS + round((f.end_s + grace_s) * 1000)


def match_faults(run: Replay, events: list[tuple[str, int]], grace_s: float = 30.0
                 ) -> tuple[list[tuple[Fault, list[int]]], list[int]]:
    """Match ``events`` (machine path, Unix ms) with the faults of the run: for each fault
    that starts within it, the indices of the events on its machine in [start, end +
    ``grace_s``]; and the indices of the events that match no fault, in order."""
    machines = {m.name: run.catalog.machine_path(m) for m in run.catalog.machines}
    by_asset: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, (asset, t) in enumerate(events):
        by_asset[asset].append((t, i))
    for rows in by_asset.values():
        rows.sort()
    per_fault: list[tuple[Fault, list[int]]] = []
    matched: set[int] = set()
    for f in run.plan.faults:
        if f.start_s >= run.duration_s:
            continue
        lo, hi = _fault_window(f, grace_s)
        rows = by_asset.get(machines[f.machine], [])
        first = bisect.bisect_left(rows, (lo, -1))
        mine = [i for _, i in rows[first:bisect.bisect_right(rows, (hi, len(events)))]]
        matched.update(mine)
        per_fault.append((f, mine))
    return per_fault, [i for i in range(len(events)) if i not in matched]


def score_faults(run: Replay, grace_s: float = 30.0) -> dict[str, Any]:
    """Alarm episodes against the fault plan: per fault whether an episode on its machine
    was raised within [start, end + grace_s], how soon, and how many; and the episodes that
    match no fault (false alarms)."""
    episodes = run.episodes()
    firsts = [recs[0] for recs in episodes.values()]
    per_fault, unmatched = match_faults(run, [(a.asset, a.updated_at) for a in firsts],
                                        grace_s)
    faults: list[dict[str, Any]] = []
    for f, idx in per_fault:
        lo, _ = _fault_window(f, grace_s)
        mine = [firsts[i] for i in idx]
        raised = min((a.updated_at for a in mine), default=None)
        cleared = [r for a in mine for r in episodes[a.alarm_id]
                   if r.action in ("cleared", "closed")]
        faults.append({
            "fault": str(f), "kind": f.kind.value, "episodes": len(mine),
            "detected": bool(mine),
            "time_to_detect_s": None if raised is None else round((raised - lo) / 1000, 1),
            "raised_after_start_s": sorted(round((a.updated_at - lo) / 1000, 1) for a in mine),
            "cleared_after_end_s": round((min(r.updated_at for r in cleared)
                                          - (T0_MS + f.end_s * 1000)) / 1000, 1)
            if cleared else None,
            "tags": sorted({t.rsplit("/", 1)[1] for a in mine for t in a.tags[:3]}),
        })
    false = [firsts[i] for i in unmatched]
    detected = [f for f in faults if f["detected"]]
    ttd = [f["time_to_detect_s"] for f in detected]
    return {
        "incidents": len(faults), "detected": len(detected),
        "episodes": len(firsts), "anomalies": len(run.anomalies),
        "alarm_records": len(run.alarms),
        "median_ttd_s": statistics.median(ttd) if ttd else None,
        "alarms_per_incident": round(sum(f["episodes"] for f in faults) / len(detected), 2)
        if detected else None,
        "false_alarms": [f"{a.asset.rsplit('/', 1)[1]}@{(a.started_at - T0_MS) / 1000:.0f}s: "
                         f"{a.message}" for a in false],
        "faults": faults,
    }
