"""``millstream bench alarms``: seeded faults of every kind, detected and alarmed as the
worker would, scored against the simulator's own record of them.

The simulator's physics runs faster than real time, without servers, for ``--hours``
simulated hours (8) with the faults of :func:`~millstream.bench.alarms_plan.fault_schedule`
(``--seed``), through the worker's own :class:`~streams.processor.FrameProcessor`
(windows, detectors, alarm engine, rules), as :func:`~millstream.bench.plant_replay.replay`
does. A fault is detected when an alarm episode on its machine is raised between its start
and 30 s after its end (:func:`~millstream.bench.plant_replay.match_faults`); the time to
detect runs from its start to the first such episode; alarms per incident are the episodes
matched per detected fault; every other episode is a false alarm, counted per machine and
hour outside the faults (a machine's run minus its own faults' windows, warm-up included).

Baseline, from the same replay: the detectors' output without the alarm engine. Every
anomaly record the worker publishes (``millstream.anomalies``) counts as an alarm, which is
what an operator watching the anomalies would be shown, and is scored by the same rule
(its machine, its ``detected_at``).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from millstream.bench.alarms_plan import fault_schedule
from millstream.bench.plant_replay import T0_MS, Replay, match_faults, replay, score_faults
from schemas.catalog import Catalog

__all__ = ["GRACE_S", "figures", "quiet_machine_hours", "run"]

logger = logging.getLogger(__name__)

GRACE_S = 30.0  # an alarm this long after a fault's end still belongs to it
DEFAULT_HOURS = 8.0
DEFAULT_SEED = 7


def quiet_machine_hours(run: Replay, grace_s: float = GRACE_S) -> float:
    """Machine-hours outside the faults: per machine, the run minus the union of its own
    faults' windows [start, end + ``grace_s``]."""
    total = 0.0
    for m in run.catalog.machines:
        spans = sorted((f.start_s, min(f.end_s + grace_s, run.duration_s))
                       for f in run.plan.faults
                       if f.machine == m.name and f.start_s < run.duration_s)
        busy, reach = 0.0, 0.0
        for lo, hi in spans:
            lo = max(lo, reach)
            if hi > lo:
                busy += hi - lo
                reach = hi
        total += run.duration_s - busy
    return total / 3600


def figures(run: Replay, events: list[tuple[str, int]], grace_s: float = GRACE_S
            ) -> dict[str, Any]:
    """Detection, time to detect, alarms per incident and false alarms of ``events``
    (machine path, Unix ms), overall and per fault kind."""
    per_fault, unmatched = match_faults(run, events, grace_s)
    kinds: dict[str, list[float | None]] = {}
    for f, idx in per_fault:
        first = min((events[i][1] for i in idx), default=None)
        ttd = None if first is None else (first - T0_MS) / 1000 - f.start_s
        kinds.setdefault(f.kind.value, []).append(ttd)
    ttds = [t for ts in kinds.values() for t in ts if t is not None]
    matched = sum(len(idx) for _, idx in per_fault)
    quiet_h = quiet_machine_hours(run, grace_s)
    return {
        "incidents": len(per_fault), "detected": len(ttds),
        "detection_rate": _ratio(len(ttds), len(per_fault)),
        "median_ttd_s": _median(ttds),
        "alarms_per_incident": _ratio(matched, len(ttds)),
        "false_alarms": len(unmatched),
        "false_alarms_per_machine_hour": _ratio(len(unmatched), quiet_h, 3),
        "per_kind": {k: {"incidents": len(ts), "detected": sum(t is not None for t in ts),
                         "median_ttd_s": _median([t for t in ts if t is not None])}
                     for k, ts in sorted(kinds.items())},
    }


def _ratio(a: float, b: float, digits: int = 2) -> float | None:
    return round(a / b, digits) if b else None


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def _progress(duration_s: float) -> Callable[[float], None]:
    t0 = time.perf_counter()
    every = max(60.0, 60 * round(duration_s / 16 / 60))
    shown = [0.0]

    def show(done_s: float) -> None:
        if done_s - shown[0] < every and done_s < duration_s:
            return
        shown[0] = done_s
        wall = time.perf_counter() - t0
        print(f"alarms: {done_s / 3600:.2f} of {duration_s / 3600:g} simulated hours, "
              f"{done_s / max(wall, 1e-9):.0f}x real time, {wall:.0f} s", file=sys.stderr,
              flush=True)
    return show


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The worker's and the simulator's INFO lines (SPC violations, faults starting) would
    bury the progress over hours of simulated plant: WARNING and up only, unless -v."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() == logging.INFO:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _detail(run: Replay) -> None:
    """Each fault and each false alarm, one line each on stderr."""
    scored = score_faults(run, GRACE_S)
    for f in scored["faults"]:
        cleared = ("not cleared by the end of the run" if f["cleared_after_end_s"] is None
                   else f"cleared {f['cleared_after_end_s']} s after its end")
        print(f"alarms: {f['fault']}: " + (
            f"{f['episodes']} episode(s) raised {f['raised_after_start_s']} s after its "
            f"start, the first {cleared}, tags {f['tags']}" if f["detected"] else "missed"),
            file=sys.stderr)
    for line in scored["false_alarms"]:
        print(f"alarms: false alarm {line}", file=sys.stderr)


def run(catalog: Catalog, hours: float | None = None, seed: int | None = None
        ) -> dict[str, Any]:
    """The ``bench alarms`` entry point: one replay, the alarm figures and the baseline."""
    duration_s = 3600 * (DEFAULT_HOURS if hours is None else hours)
    seed = DEFAULT_SEED if seed is None else seed
    plan = fault_schedule(catalog, seed, duration_s)
    count = Counter(f.kind.value for f in plan.faults)
    print(f"alarms: {len(plan.faults)} faults ({', '.join(f'{n} {k}' for k, n in count.items())})"
          f" on {len(catalog.machines)} machines over {duration_s / 3600:g} simulated hours, "
          f"seed {seed}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with _quiet("streams", "connectors.simulator"):
        out = replay(catalog, plan, duration_s, seed=seed, progress=_progress(duration_s))
    took = time.perf_counter() - t0
    _detail(out)
    episodes = [recs[0] for recs in out.episodes().values()]
    result: dict[str, Any] = {"benchmark": "alarms", "hours": duration_s / 3600, "seed": seed}
    result.update(figures(out, [(a.asset, a.updated_at) for a in episodes]))
    result["baseline"] = {k: v for k, v in figures(
        out, [(a.asset or "", a.detected_at) for a in out.anomalies]).items()
        if k != "incidents"}
    result.update({
        "machine_hours_outside_faults": round(quiet_machine_hours(out), 2),
        "episodes": len(episodes), "anomaly_records": len(out.anomalies),
        "commands": out.commands, "seconds": round(took, 1),
        "times_real_time": round(duration_s / took) if took else None,
    })
    return result
