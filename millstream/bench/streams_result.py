"""The JSON of ``bench streams``: the headline figures side by side, then each run.

The headline keys are the ones issue 6 names (``readings``, ``tags``,
``millstream_per_s``, ``millstream_eos_per_s``, ``baseline_per_s``, ``quix_per_s``,
``naive_faust_per_s``, ``ratio_vs_baseline``, ``ratio_vs_quix``, ``worker_peak_rss_mb``);
a figure that was not measured is null, and ``notes`` says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from millstream.bench.raw import Run

__all__ = ["TARGETS", "RunInfo", "rate", "shape_result"]

# issue 6, on a 2-core machine; the RSS target is for --tags 100000
TARGETS: dict[str, float] = {"millstream_per_s": 500_000, "ratio_vs_baseline": 0.5,
                             "ratio_vs_quix": 5.0, "worker_peak_rss_mb": 1024.0}
RSS_TARGET_TAGS = 100_000
_WORKERS = ("baseline", "millstream", "millstream_eos")


@dataclass(frozen=True)
class RunInfo:
    """One run and what its process reported (empty for the in-process baseline)."""

    run: Run
    doc: dict[str, Any] = field(default_factory=dict)


def rate(name: str, info: RunInfo | None) -> int | None:
    """Readings/s of a run: a worker's only when it handled every reading (a part of
    the stream proves nothing about the whole); a peer's also over the part it handled
    before its time ran out (its rate is steady, and the run says it did not finish)."""
    if info is None:
        return None
    run = info.run
    if run.per_s is None or (name in _WORKERS and not run.completed):
        return None
    return round(run.per_s)


def _ratio(a: int | None, b: int | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def shape_result(readings: int, tags: int, peer_readings: int, produced: dict[str, float],
                 runs: dict[str, RunInfo], notes: list[str], kafka: str) -> dict[str, Any]:
    r = {name: rate(name, info) for name, info in runs.items()}
    quix_modes = {m: r.get(f"quix_{m}") for m in ("per_reading", "expand")}
    known = [v for v in quix_modes.values() if v is not None]
    quix = max(known) if known else None
    ours, base = r.get("millstream"), r.get("baseline")
    worker = runs.get("millstream")
    rss = worker.doc.get("peak_rss_mb") if worker is not None else None
    out: dict[str, Any] = {
        "benchmark": "streams",
        "readings": readings,
        "tags": tags,
        "millstream_per_s": ours,
        "millstream_eos_per_s": r.get("millstream_eos"),
        "baseline_per_s": base,
        "quix_per_s": quix,
        "naive_faust_per_s": r.get("naive_faust"),
        "ratio_vs_baseline": _ratio(ours, base),
        "ratio_vs_quix": _ratio(ours, quix),
        "worker_peak_rss_mb": rss if isinstance(rss, int | float) else None,
        "quix_per_reading_per_s": quix_modes["per_reading"],
        "quix_expand_per_s": quix_modes["expand"],
        "peer_readings": peer_readings,
        "produced": produced,
    }
    out["per_cpu_second"] = _per_cpu(runs, r)
    out["targets"] = TARGETS
    out["meets_targets"] = _meets(out)
    out["runs"] = {name: _run_doc(info) for name, info in runs.items()}
    out["notes"] = notes
    out["kafka"] = kafka
    out["cpus"] = os.cpu_count()
    return out


def _per_cpu(runs: dict[str, RunInfo], r: dict[str, int | None]) -> dict[str, Any]:
    """Readings per CPU second of each run (its process's CPU, every thread, over the
    timed span): what the figures would be if the run had the cores to itself, which on a
    loaded machine the wall-clock rates are not."""
    out: dict[str, Any] = {}
    for name, info in runs.items():
        cpu = info.doc.get("run_cpu_seconds", info.doc.get("cpu_seconds"))
        ok = r.get(name) is not None and isinstance(cpu, int | float) and cpu > 0
        out[name] = round(info.run.readings / float(cpu)) if ok and cpu else None
    quix = [v for k, v in out.items() if k.startswith("quix_") and v is not None]
    ours = out.get("millstream")
    out["ratio_vs_baseline"] = _ratio(ours, out.get("baseline"))
    out["ratio_vs_quix"] = _ratio(ours, max(quix) if quix else None)
    return out


def _meets(out: dict[str, Any]) -> dict[str, bool | None]:
    """Each target met (True/False), or None when its figure is missing or (RSS) the
    run had fewer tags than the target is set for."""
    found: dict[str, bool | None] = {}
    for key in ("millstream_per_s", "ratio_vs_baseline", "ratio_vs_quix"):
        value = out.get(key)
        found[key] = None if value is None else value >= TARGETS[key]
    rss = out.get("worker_peak_rss_mb")
    found["worker_peak_rss_mb"] = (None if rss is None or out["tags"] < RSS_TARGET_TAGS
                                   else rss <= TARGETS["worker_peak_rss_mb"])
    return found


def _run_doc(info: RunInfo) -> dict[str, Any]:
    run, doc = info.run, info.doc
    out: dict[str, Any] = {"readings": run.readings, "messages": run.messages,
                           "seconds": round(run.seconds, 3), "completed": run.completed,
                           "note": run.note}
    for key in ("process_seconds", "peak_rss_mb", "cpu_seconds", "run_cpu_seconds",
                "processor", "windows", "run_seconds"):
        if key in doc:
            value = doc[key]
            out[key] = round(value, 3) if isinstance(value, float) else value
    return out
