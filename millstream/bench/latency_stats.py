"""The figures of ``millstream bench latency``: percentiles, and where the time goes.

A change's command path is cut into hops by the stamps its messages carry (all clocks
are this host's):

- ``edge``: source timestamp -> the connector hands the frame to Kafka (its CreateTime):
  the OPC-UA sampling and publishing intervals, the connector, the idle flush;
- ``readings_to_command``: -> the worker issues the command (``issued_at``): the producer's
  linger, the broker, the worker's consumer and processing;
- ``command_to_result``: -> the executor stamps the result (``executed_at``): delivery of
  the command, signature and safety checks, the in-flight marker, the device write and
  read back;
- ``result_delivery``: -> the result arrives here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from millstream.bench.latency_watch import Seen, Watcher
from schemas.events import Command, CommandResult

__all__ = ["Change", "percentiles", "summarize"]

HOPS = ("edge", "readings_to_command", "command_to_result", "result_delivery")


@dataclass(frozen=True, slots=True)
class Change:
    """One forced breach: the machine, its tag, the source timestamp, and the result and
    command it got (None: no result within the timeout)."""

    machine: str
    tag: str
    ts: int
    hit: tuple[CommandResult, Seen, Command, Seen] | None

    @property
    def latency_ms(self) -> int | None:
        return None if self.hit is None else self.hit[1].recv_ms - self.ts


def percentiles(values: list[float], qs: tuple[float, ...] = (50, 99)) -> list[float | None]:
    if not values:
        return [None] * len(qs)
    return [round(float(v), 1) for v in np.percentile(values, qs)]


def _hops(c: Change, watcher: Watcher) -> dict[str, float] | None:
    frame = watcher.breach(c.tag, c.ts)
    if c.hit is None or frame is None:
        return None
    result, seen, command, _ = c.hit
    return {"edge": frame.kafka_ms - c.ts,
            "readings_to_command": command.issued_at - frame.kafka_ms,
            "command_to_result": result.executed_at - command.issued_at,
            "result_delivery": seen.recv_ms - result.executed_at}


def summarize(changes: list[Change], watcher: Watcher, background_per_s: float,
              ) -> dict[str, Any]:
    """The result: the issue's keys first, then the detail."""
    lat = [float(c.latency_ms) for c in changes if c.latency_ms is not None]
    anomaly = []
    for c in changes:
        hit = watcher.anomaly(c.tag, c.ts)
        if hit is not None:
            anomaly.append(float(hit[1].recv_ms - c.ts))
    p50, p90, p99 = percentiles(lat, (50, 90, 99))
    a50, a99 = percentiles(anomaly)
    hops = [h for c in changes if (h := _hops(c, watcher)) is not None]
    statuses = Counter(c.hit[0].status for c in changes if c.hit is not None)
    return {
        "benchmark": "latency",
        "changes": len(changes),
        "p50_ms": p50, "p99_ms": p99, "max_ms": max(lat) if lat else None,
        "anomaly_p50_ms": a50, "anomaly_p99_ms": a99,
        "background_per_s": round(background_per_s),
        "p90_ms": p90, "min_ms": min(lat) if lat else None,
        "results": len(lat), "missed": len(changes) - len(lat),
        "result_status": dict(statuses),
        "anomalies_matched": len(anomaly), "anomaly_max_ms": max(anomaly) if anomaly else None,
        "hops_p50_ms": {h: percentiles([x[h] for x in hops], (50,))[0] for h in HOPS},
        "hops_p99_ms": {h: percentiles([x[h] for x in hops], (99,))[0] for h in HOPS},
        "seen": watcher.counts(),
        "watch_errors": watcher.errors[:5],
    }
