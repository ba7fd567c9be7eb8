"""The KPI tallies of one readings partition as plain data, for the worker's checkpoints.

A checkpoint of a partition (:meth:`streams.processor.FrameProcessor.snapshot`) carries,
besides its windows, what :class:`streams.kpis.KpiEngine` holds for it: per (source,
partition) the watermark, the KPI readings not released yet and the machines seen; per
machine of those, its :class:`streams.timeline.MachineTimeline` (event-time cursor, state
inputs, last counter values, last power reading, and the tallies of its open shifts). A
worker that restarts, or takes the partition over, continues the shift's OEE and energy
where the checkpoint left them instead of from zero.

Tags and machines are saved by path, not by :class:`streams.roles.PlantRoles` number, so a
catalog that gained a machine still reads the checkpoint; readings of tags the catalog no
longer has are left out (logged). Each shift keeps its own start, end and planned stops.
Strict JSON unless ``arrays`` keeps the pending readings' columns as NumPy arrays.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from schemas.twin import MachineState
from streams.exceptions import StateVersionError
from streams.kpis import KpiEngine, KpiStream
from streams.oee import ShiftTally
from streams.roles import Role
from streams.shifts import ShiftSlot
from streams.timeline import MachineTimeline
from streams.watermarks import Watermark

__all__ = ["KPI_STATE_VERSION", "restore_kpis", "snapshot_kpis"]

logger = logging.getLogger(__name__)

KPI_STATE_VERSION = 1  # of snapshot_kpis()'s layout


def snapshot_kpis(eng: KpiEngine, partition: int | None = None, *,
                  arrays: bool = False) -> dict[str, Any]:
    """The streams of ``partition`` (or all) and the timelines of their machines."""
    picked = {k: st for k, st in eng.streams.items() if partition is None or k[1] == partition}
    machines = sorted({m for st in picked.values() for m in st.machines})
    return {"version": KPI_STATE_VERSION,
            "streams": [_stream(eng, src, p, st, arrays) for (src, p), st in picked.items()],
            "timelines": [_timeline(eng.timelines[m]) for m in machines
                          if m in eng.timelines]}


def restore_kpis(eng: KpiEngine, doc: dict[str, Any], now_ms: int | None = None) -> None:
    """Take a :func:`snapshot_kpis` besides what ``eng`` holds (the caller dropped what it
    replaces); ``now_ms`` restarts the idle timeout of the restored sources."""
    if doc.get("version") != KPI_STATE_VERSION:
        raise StateVersionError("the KPI state", f"layout {doc.get('version')}",
                                f"layout {KPI_STATE_VERSION}")
    by_path = eng.roles.by_path
    for t in doc["timelines"]:
        info = by_path.get(t["machine"])
        if info is None:
            logger.warning("KPI state: machine %s is not in the catalog any more; its open "
                           "shifts' tallies are not restored", t["machine"])
            continue
        eng.timelines[info.index] = _load_timeline(eng, info.index, t)
    for s in doc["streams"]:
        wm = Watermark(eng.lateness_ms, s["wm"]["max_ts"], s["wm"]["value"],
                       s["wm"]["last_seen_ms"] if now_ms is None else now_ms)
        st = KpiStream(wm, bucket=s["bucket"], released=s["released"])
        st.machines = {by_path[m].index for m in s["machines"] if m in by_path}
        st.pending = _load_pending(eng, s["pending"])
        eng.streams[(s["source"], int(s["partition"]))] = st


def _stream(eng: KpiEngine, source: str, partition: int, st: KpiStream,
            arrays: bool) -> dict[str, Any]:
    pending: dict[str, Any] | None = None
    if st.pending:
        ts, seq, ids, value, quality = (np.concatenate(c) for c in zip(*st.pending,
                                                                      strict=True))
        tags = [eng.roles.paths[i] for i in ids.tolist()]
        if arrays:
            pending = {"ts": ts, "seq": seq, "tag": tags, "value": value, "quality": quality}
        else:
            pending = {"ts": ts.tolist(), "seq": seq.tolist(), "tag": tags,
                       "value": [None if v != v else v for v in value.tolist()],
                       "quality": quality.tolist()}
    wm = st.wm
    return {"source": source, "partition": partition,
            "wm": {"max_ts": wm.max_ts, "value": wm.value, "last_seen_ms": wm.last_seen_ms},
            "machines": sorted(eng.roles.machines[m].path for m in st.machines),
            "bucket": st.bucket, "released": st.released, "pending": pending}


def _load_pending(eng: KpiEngine, doc: dict[str, Any] | None) -> list[Any]:
    if not doc:
        return []
    index = eng.roles.index
    known = np.fromiter((t in index for t in doc["tag"]), bool, len(doc["tag"]))
    if not known.all():
        gone = sorted({t for t, k in zip(doc["tag"], known.tolist(), strict=True) if not k})
        logger.warning("KPI state: %d pending readings of tags no longer in the catalog are "
                       "not restored: %s", int((~known).sum()), ", ".join(gone))
    ids = np.fromiter((index[t] for t, k in zip(doc["tag"], known.tolist(), strict=True)
                       if k), np.int64)
    value = np.asarray([np.nan if v is None else v for v in doc["value"]], np.float64) \
        if isinstance(doc["value"], list) else np.asarray(doc["value"], np.float64)
    cols = (np.asarray(doc["ts"], np.int64)[known], np.asarray(doc["seq"], np.int64)[known],
            ids, value[known], np.asarray(doc["quality"], np.int8)[known])
    return [cols] if len(ids) else []


def _timeline(tl: MachineTimeline) -> dict[str, Any]:
    return {"machine": tl.info.path, "cursor": tl.cursor, "state": tl.state.value,
            "inputs": {r.name: v for r, v in tl.inputs.items()},
            "counters": {r.name: v for r, v in tl.counters.items()},
            "power": list(tl.power) if tl.power is not None else None,
            "tallies": [_tally(t) for _, t in sorted(tl.tallies.items())]}


def _tally(t: ShiftTally) -> dict[str, Any]:
    s = t.slot
    return {"shift": s.name, "start": s.start, "end": s.end,
            "stops": [list(x) for x in s.stops], "through": t.through,
            "ms": {k.value: v for k, v in t.ms.items()}, "parts": t.parts,
            "rejects": t.rejects, "kwh": t.kwh, "gap_ms": t.gap_ms, "power_kw": t.power_kw}


def _load_timeline(eng: KpiEngine, machine: int, doc: dict[str, Any]) -> MachineTimeline:
    tl = MachineTimeline(eng.roles.machines[machine], eng.calendar, eng.max_gap_ms)
    tl.cursor = doc["cursor"]
    tl.state = MachineState(doc["state"])
    tl.inputs = {Role[k]: v for k, v in doc["inputs"].items()}
    tl.counters = {Role[k]: float(v) for k, v in doc["counters"].items()}
    tl.power = (int(doc["power"][0]), float(doc["power"][1])) if doc["power"] else None
    for d in doc["tallies"]:
        slot = ShiftSlot(d["shift"], d["start"], d["end"],
                         tuple((int(a), int(b)) for a, b in d["stops"]))
        tl.tallies[slot.start] = ShiftTally(
            slot, d["through"], {MachineState(k): int(v) for k, v in d["ms"].items()},
            float(d["parts"]), float(d["rejects"]), float(d["kwh"]), int(d["gap_ms"]),
            d["power_kw"])
    return tl
