"""A real Faust worker for the wire benchmark: one agent that decodes and counts readings.

Run as ``python -m millstream.bench._faust_consumer --bootstrap B --topic T --mode M
--readings N --result FILE``. Modes: ``per-reading`` (json per message), ``frames``
(ReadingFrame.decode + arrays per frame), ``processor`` (streams' FrameProcessor per
frame: windows + anomaly detection). The worker writes its progress to FILE (JSON, atomically)
every second and once more when the Nth reading is handled, then stops itself (SIGTERM).
The parent kills it if it takes too long, and reports the last progress it wrote.
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
from pathlib import Path
from typing import Any

__all__ = ["Progress", "main"]


@dataclass
class Progress:
    mode: str
    target: int
    readings: int = 0
    messages: int = 0
    seconds: float = 0.0  # first message received -> last reading handled
    completed: bool = False
    started: bool = False  # the agent is running (the worker is up)
    processor: dict[str, int] | None = None


def _write(path: Path, p: Progress) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(p)))
    tmp.replace(path)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="millstream.bench._faust_consumer")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--mode", choices=["per-reading", "frames", "processor"], required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--catalog", default=None, help="plant catalog YAML (processor mode)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    import faust
    from faust.types import EventT

    from millstream.bench.raw import Decode, count_frame, count_reading

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = faust.App(
        f"millstream-bench-{args.mode}-{uuid.uuid4().hex[:10]}",
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw", key_serializer="raw",
        store="memory://", web_enabled=False, topic_disable_leader=True,
        consumer_auto_offset_reset="earliest", topic_partitions=1,
        consumer_max_fetch_size=10_485_760,
    )
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    prog = Progress(args.mode, args.readings)
    processor: Any = None
    decode: Decode = count_reading if args.mode == "per-reading" else count_frame
    if args.mode == "processor":
        from schemas.catalog import load_catalog
        from streams.processor import FrameProcessor

        processor = FrameProcessor(load_catalog(args.catalog))
    first: list[float] = []

    def handle(event: EventT) -> int:
        if processor is None:
            return decode(event.value)
        msg = event.message
        before = processor.readings
        processor.process(msg.key, event.value, msg.topic, msg.partition, msg.offset,
                          int(time.time() * 1000))
        return int(processor.readings - before)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        prog.started = True
        _write(args.result, prog)
        async for event in stream.events():
            if prog.completed:
                continue
            if not first:
                first.append(time.perf_counter())
            prog.readings += handle(event)
            prog.messages += 1
            if prog.readings >= prog.target:
                _finish()

    def _finish() -> None:
        prog.seconds = time.perf_counter() - first[0]
        prog.completed = True
        prog.processor = processor.counters() if processor is not None else None
        _write(args.result, prog)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker shuts down cleanly

    @app.timer(interval=1.0)
    async def report() -> None:
        if not prog.completed:
            if first:
                prog.seconds = time.perf_counter() - first[0]
            if processor is not None:
                prog.processor = processor.counters()
            _write(args.result, prog)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0  # pragma: no cover  (execute_from_commandline exits)


if __name__ == "__main__":
    sys.exit(main())
