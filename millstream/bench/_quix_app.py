"""The Quix Streams peer of ``bench streams``, run by the Quix virtualenv's own Python.

This file imports only the standard library and, when it runs, quixstreams (inside
:func:`main`, so the module itself imports anywhere, e.g. in the image): quixstreams 3.28 needs
confluent-kafka < 2.13 and pydantic < 2.14, so it runs in its own virtualenv
(:mod:`millstream.bench.quix`) as ``python _quix_app.py --bootstrap B --topic T --mode M
--readings R --output O --result FILE``. It computes per tag the tumbling 1 s window's
min, max, mean and count, as Quix Streams' documentation shows, and produces each closed
window to ``O``:

- ``per-reading``: one JSON message per reading, keyed by tag, the event time taken from
  the value (``timestamp_extractor``);
- ``expand``: millstream's frames, exploded into one row per reading (``expand=True``),
  re-keyed by tag (``group_by``: a repartition topic) and stamped with the reading's time.

Quix keeps the windows in its default state store (RocksDB with changelog topics) under
its default at-least-once guarantee. Progress goes to FILE as JSON (as the other
benchmark workers write it); ``seconds`` runs from the first row to the R-th, or to the
last one handled within ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

WINDOW_MS = 1000


class Progress:
    """What the parent reads: the benchmark workers' progress fields."""

    def __init__(self, path: Path, target: int, mode: str) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"mode": mode, "target": target, "readings": 0,
                                    "messages": 0, "seconds": 0.0, "completed": False,
                                    "started": False, "windows": 0}
        self.first: float | None = None
        self.cpu0 = 0.0
        self.last_write = 0.0

    def write(self) -> None:
        self.doc["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc))
        os.replace(tmp, self.path)
        self.last_write = time.monotonic()


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, MiB). Not ``ru_maxrss``: Linux carries
    that over from the parent across fork and exec, so a child would report the larger
    of its own peak and its parent's size at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _explode(frame: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per reading of a millstream frame."""
    for tag, ts, value, quality in zip(frame["tag"], frame["ts"], frame["value"],
                                       frame["quality"], strict=True):
        yield {"tag": tag, "ts": ts, "value": value, "quality": quality}


def main(argv: Sequence[str] | None = None) -> int:
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Mean, Min

    ap = argparse.ArgumentParser(prog="_quix_app")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--mode", choices=["per-reading", "expand"], required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--group", default=None, help="consumer group (names its topics)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="stop after this long from the first row, with what was handled")
    args = ap.parse_args(argv)

    prog = Progress(args.result, args.readings, args.mode)
    state_dir = tempfile.mkdtemp(prefix="millstream-bench-quix-state-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group or f"millstream-bench-quix-{args.mode}-{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest", state_dir=state_dir, loglevel="WARNING",
    )

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        return int(value["ts"])

    if args.mode == "per-reading":
        sdf = app.dataframe(app.topic(args.topic, value_deserializer="json",
                                      key_deserializer="str", timestamp_extractor=event_time))
    else:
        sdf = app.dataframe(app.topic(args.topic, value_deserializer="json",
                                      key_deserializer="str"))
        sdf = sdf.apply(_explode, expand=True)
        sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: int(value["ts"]))
        sdf = sdf.group_by("tag")

    def counted(_value: Any) -> None:
        now = time.perf_counter()
        if prog.first is None:
            prog.first = now
            prog.cpu0 = _cpu_seconds()
            prog.doc["started"] = True
        prog.doc["readings"] += 1
        prog.doc["seconds"] = now - prog.first
        enough = prog.doc["readings"] >= args.readings or (
            args.seconds is not None and prog.doc["seconds"] >= args.seconds)
        if enough and not prog.doc["completed"]:
            prog.doc["completed"] = True
            prog.doc["run_cpu_seconds"] = round(_cpu_seconds() - prog.cpu0, 3)
            prog.write()
            app.stop()
        elif time.monotonic() - prog.last_write >= 1.0:
            prog.write()

    def closed(_value: Any) -> None:
        prog.doc["windows"] += 1

    sdf = sdf.update(counted)
    sdf = sdf.filter(lambda value: value["value"] is not None and value["quality"] != 2)
    sdf = sdf.tumbling_window(duration_ms=WINDOW_MS).agg(
        min=Min("value"), max=Max("value"), mean=Mean("value"), count=Count()).final()
    sdf = sdf.update(closed)
    sdf.to_topic(app.topic(args.output, value_serializer="json", key_serializer="str"))
    prog.doc["started"] = True
    prog.write()
    t0 = time.perf_counter()
    app.run()
    prog.doc["run_seconds"] = time.perf_counter() - t0  # start-up and shutdown included
    prog.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
