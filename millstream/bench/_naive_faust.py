"""The naive Faust peer of ``bench streams``: a windowed Faust table updated per reading.

Run as ``python -m millstream.bench._naive_faust --bootstrap B --topic T --readings R
--result FILE``. One agent reads the frames topic and, for every reading, reads and
writes its tag's entry in a tumbling 1 s table (count, min, max, sum; by the reading's own
timestamp), the way the Faust documentation builds windowed aggregations: each write is
also a changelog message, which is what makes the table survive a restart. Progress goes
to FILE as in :mod:`millstream.bench._streams_worker`; with ``--seconds S`` it stops
after S seconds with the readings it handled by then.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from millstream.bench._proc import own_cpu_seconds, peak_rss_mb

__all__ = ["main"]


@dataclass
class Progress:
    target: int
    readings: int = 0
    messages: int = 0
    seconds: float = 0.0
    completed: bool = False
    started: bool = False
    peak_rss_mb: float = 0.0
    run_cpu_seconds: float = 0.0  # CPU of the process (all threads) over ``seconds``



def _write(path: Path, p: Progress) -> None:
    p.peak_rss_mb = round(peak_rss_mb(os.getpid()) or 0.0, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(p)))
    tmp.replace(path)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="millstream.bench._naive_faust")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--app-id", default=None, help="Faust app id (consumer group)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="stop after this long from the first message, with what was handled")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    import faust

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = faust.App(
        args.app_id or f"millstream-bench-naive-{uuid.uuid4().hex[:10]}",
        broker=f"kafka://{args.bootstrap}", value_serializer="json", key_serializer="json",
        store="memory://", web_enabled=False, topic_disable_leader=True,
        consumer_auto_offset_reset="earliest", topic_partitions=args.partitions,
        topic_replication_factor=1, consumer_max_fetch_size=10_485_760,
    )
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    now_ts = [0.0]  # the reading being handled: its window
    windowed: Any = app.Table("window-stats", default=lambda: None,  # json keys, values
                              partitions=args.partitions).tumbling(
        1.0, expires=timedelta(seconds=10))
    stats = windowed.relative_to(lambda _event: now_ts[0])  # the reading's own time
    prog = Progress(args.readings)
    first: list[float] = []
    cpu0: list[float] = []

    @app.agent(topic)
    async def aggregate(stream: Any) -> None:
        prog.started = True
        _write(args.result, prog)
        async for value in stream:
            if prog.completed:
                continue
            if not first:
                first.append(time.perf_counter())
                cpu0.append(own_cpu_seconds())
            doc = json.loads(value)
            for tag, ts, v, q in zip(doc["tag"], doc["ts"], doc["value"], doc["quality"],
                                     strict=True):
                prog.readings += 1
                if v is None or q == 2:
                    continue
                now_ts[0] = ts / 1000
                s = stats[tag].current()
                stats[tag] = ([1, v, v, v] if s is None
                              else [s[0] + 1, min(s[1], v), max(s[2], v), s[3] + v])
            prog.messages += 1
            spent = time.perf_counter() - first[0]
            if prog.readings >= prog.target or (args.seconds is not None
                                                and spent >= args.seconds):
                await app.producer.flush()
                prog.seconds = time.perf_counter() - first[0]
                prog.run_cpu_seconds = round(own_cpu_seconds() - cpu0[0], 3)
                prog.completed = True
                _write(args.result, prog)
                os.kill(os.getpid(), signal.SIGTERM)

    @app.timer(interval=1.0)
    async def report() -> None:
        if not prog.completed:
            if first:
                prog.seconds = time.perf_counter() - first[0]
            _write(args.result, prog)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None  # as the streams worker: its handler puts the root log at DEBUG
    worker.execute_from_commandline()
    return 0  # pragma: no cover  (execute_from_commandline exits)


if __name__ == "__main__":
    sys.exit(main())
