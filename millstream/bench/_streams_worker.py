"""The millstream streams worker as ``bench streams`` runs it: the real Faust app, timed.

Run as ``python -m millstream.bench._streams_worker --bootstrap B --prefix P --tags N
--readings R --result FILE [--guarantee G]``. It builds the benchmark plant's catalog
(:func:`millstream.bench.plant.scaled_catalog`), starts :func:`streams.app.create_app`
unchanged (every configured window, the detector, the rules, every output topic), and
only wraps its processor to note the time of the first message and of the R-th reading.
When the R-th reading is handled it waits until the worker's keeper has checkpointed
every partition (every result delivered, or committed under exactly-once), writes the
result (``seconds`` from the first message to that checkpoint, the CPU seconds the
process used meanwhile, the processor's counters, peak RSS) and stops itself with
SIGTERM. With ``MILLSTREAM_BENCH_PROFILE=FILE`` the event loop's thread is profiled
(cProfile) over the same span and the statistics written to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from millstream.bench._proc import own_cpu_seconds, peak_rss_mb

__all__ = ["main"]


@dataclass
class Progress:
    target: int
    readings: int = 0
    messages: int = 0
    seconds: float = 0.0  # first message received -> outputs of the last reading delivered
    process_seconds: float = 0.0  # first message -> last reading handled (before the flush)
    run_cpu_seconds: float = 0.0  # CPU of the process (all threads) over ``seconds``
    thread_cpu: dict[str, float] = field(default_factory=dict)  # whole life, per thread
    completed: bool = False
    started: bool = False
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0  # of the whole process, start-up included
    processor: dict[str, Any] = field(default_factory=dict)


def _write(path: Path, p: Progress) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(p)))
    tmp.replace(path)



def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by thread name (Linux /proc)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            key = f"{name}-{task.name}"
            out[key] = round((int(fields[11]) + int(fields[12])) / tick, 2)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="millstream.bench._streams_worker")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--prefix", required=True, help="topic prefix (Topics)")
    ap.add_argument("--tags", type=int, required=True)
    ap.add_argument("--tags-per-source", type=int, default=1000)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--catalog", default=None, help="base plant catalog YAML")
    ap.add_argument("--guarantee", default=None, help="create_app(guarantee=...)")
    ap.add_argument("--app-id", default=None, help="Faust app id (consumer group)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    from millstream.bench.plant import scaled_catalog
    from schemas.catalog import load_catalog
    from schemas.topics import Topics
    from streams.app import create_app, quiet_worker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    catalog = scaled_catalog(load_catalog(args.catalog), args.tags, args.tags_per_source)
    extra: dict[str, Any] = {} if args.guarantee is None else {"guarantee": args.guarantee}
    app = create_app(catalog, bootstrap=args.bootstrap, topics=Topics(args.prefix),
                     app_id=args.app_id or f"millstream-bench-streams-{uuid.uuid4().hex[:10]}",
                     **extra)
    proc = app.processor  # type: ignore[attr-defined]
    prog = Progress(args.readings)
    first: list[float] = []
    done: list[float] = []
    cpu0: list[float] = []
    handle = proc.process
    profile_to = os.environ.get("MILLSTREAM_BENCH_PROFILE")  # cProfile the run into it
    profiler = cProfile.Profile() if profile_to else None

    def process(*a: Any, **kw: Any) -> Any:
        if not first:
            first.append(time.perf_counter())
            cpu0.append(own_cpu_seconds())
            if profiler is not None:
                profiler.enable()
        out = handle(*a, **kw)
        prog.messages += 1
        if not done and proc.readings >= prog.target:
            done.append(time.perf_counter())
        return out

    proc.process = process  # the agent calls it through the instance

    async def finish() -> None:
        # every result delivered and the state checkpointed (exactly-once: committed)
        await app.keeper.checkpoint()  # type: ignore[attr-defined]
        now = time.perf_counter()
        prog.run_cpu_seconds = round(own_cpu_seconds() - cpu0[0], 3)
        prog.thread_cpu = _thread_cpu()
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
        prog.process_seconds = done[0] - first[0]
        prog.seconds = now - first[0]
        prog.completed = True
        report()
        os.kill(os.getpid(), signal.SIGTERM)  # the worker shuts down cleanly

    def report() -> None:
        prog.readings = int(proc.readings)
        prog.processor = proc.counters()
        prog.peak_rss_mb = round(peak_rss_mb(os.getpid()) or 0.0, 1)
        prog.cpu_seconds = round(own_cpu_seconds(), 2)
        if first and not prog.completed:
            prog.seconds = time.perf_counter() - first[0]
        _write(args.result, prog)

    @app.task
    async def watch() -> None:
        prog.started = True
        report()
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.02)
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                report()
        await finish()

    quiet_worker(app, "WARNING").execute_from_commandline()
    return 0  # pragma: no cover  (execute_from_commandline exits)


if __name__ == "__main__":
    sys.exit(main())
