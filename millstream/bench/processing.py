"""``millstream bench streams``: the stream worker's logic without Kafka, against a naive loop.

millstream's figure: readings/s of the vectorised windows alone, and of FrameProcessor end
to end (decode, windows, anomaly scoring, rules) on encoded frames. Baseline, same run and
same frames: a plain per-reading Python loop computing the same window statistics (decode
with json, a dict of running sums per tag and window), the way a first version would.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from schemas.catalog import Catalog, load_catalog
from streams.bench import frames_for_bench, measure

__all__ = ["naive_rate", "run"]


def naive_rate(payloads: list[bytes], window_ms: int) -> tuple[float, int]:
    """Readings/s of a per-reading loop doing count/min/max/mean/std/first/last per window."""
    t0 = time.perf_counter()
    state: dict[tuple[str, int], list[float]] = {}
    n = 0
    for payload in payloads:
        doc = json.loads(payload)
        for tag, ts, value, q in zip(doc["tag"], doc["ts"], doc["value"], doc["quality"],
                                     strict=True):
            n += 1
            if value is None or q == 2:
                continue
            key = (tag, ts - ts % window_ms)
            s = state.get(key)
            if s is None:  # count, sum, sumsq, min, max, first, last
                state[key] = [1, value, value * value, value, value, value, value]
            else:
                s[0] += 1
                s[1] += value
                s[2] += value * value
                s[3] = min(s[3], value)
                s[4] = max(s[4], value)
                s[6] = value
    for s in state.values():  # close every window
        mean = s[1] / s[0]
        _std = math.sqrt(max(s[2] / s[0] - mean * mean, 0.0))
    return n / (time.perf_counter() - t0), len(state)


def run(catalog: Catalog | None = None, n_frames: int = 300) -> dict[str, Any]:
    cat = catalog or load_catalog()
    print(f"millstream: bench streams: {n_frames} frames of 1000 readings ...",
          file=sys.stderr, flush=True)
    rates = measure(cat, n_frames=n_frames, frame_size=1000)
    payloads = [f.encode() for f in frames_for_bench(cat, n_frames, 1000)]
    baseline, windows = naive_rate(payloads, cat.streams.window_ms)
    return {
        "benchmark": "streams",
        "readings": n_frames * 1000,
        "windows": windows,
        "millstream_windows_readings_per_s": round(rates["windows"]),
        "millstream_processor_readings_per_s": round(rates["processor"]),
        "baseline_naive_loop_readings_per_s": round(baseline),
        "speedup_processor_vs_naive": round(rates["processor"] / baseline, 2),
        "note": "processor = decode + windows + River scoring + rules; naive = decode + "
                "window statistics only",
    }
