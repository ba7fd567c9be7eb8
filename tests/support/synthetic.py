"""A synthetic source at a fixed rate, through the real connector base, spool and publisher.

The plant simulator produces a few hundred readings/s; the spool tests need ~2,000/s, so
this :class:`SteadySource` emits catalog tags on a clock. Run as a process (the tests kill
it)::

    python -m tests.support.synthetic --bootstrap HOST:PORT --prefix P --spool DIR \\
        --rate 2000 --status-file F

It stops on SIGTERM (flushing, like ``millstream connect``) and prints its final status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from connectors.base import FramePublisher, Source
from connectors.run import attach_gaps, open_publisher
from connectors.spool import SpoolConfig, SpoolPolicy
from schemas.catalog import load_catalog
from schemas.events import now_ms
from schemas.topics import Topics

__all__ = ["SteadySource", "main"]

logger = logging.getLogger(__name__)

TICK_S = 0.05


class SteadySource(Source):
    """Emits ``rate`` readings/s over ``tags`` (values count up), ``limit`` in all if given.

    Honours ``block`` as a polled device would: while blocked it reads nothing, and the
    readings of that time are never taken (the device's own loss, not millstream's).
    """

    protocol = "synthetic"

    def __init__(self, name: str, publisher: FramePublisher, tags: list[str], rate: float,
                 *, limit: int | None = None, **kw: Any) -> None:
        super().__init__(name, publisher, **kw)
        self.tags, self.rate, self.limit = tags, rate, limit
        self.emitted = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        self.connected = True
        t0 = time.monotonic()
        while self.running and (self.limit is None or self.emitted < self.limit):
            if self.blocked:
                waited = time.monotonic()
                await self.wait_unblocked()
                t0 += time.monotonic() - waited  # the device was not read meanwhile
            due = int((time.monotonic() - t0) * self.rate)
            if self.limit is not None:
                due = min(due, self.limit)
            ts = now_ms()
            while self.emitted < due:
                self.emit(self.tags[self.emitted % len(self.tags)], ts, float(self.emitted))
                self.emitted += 1
            await asyncio.sleep(TICK_S)
        self.done.set()
        await asyncio.Event().wait()


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    catalog = load_catalog()
    tags = sorted(catalog.tags())
    spool = SpoolConfig(Path(args.spool), max_bytes=args.max_bytes,
                        segment_bytes=args.segment_bytes, policy=SpoolPolicy(args.policy),
                        fsync_ms=args.fsync_ms)
    publisher = open_publisher(args.bootstrap, Topics(args.prefix), args.source, spool=spool)
    source = SteadySource(args.source, publisher, tags, args.rate, limit=args.limit,
                          status_file=Path(args.status_file), frame_ms=args.frame_ms)
    attach_gaps(publisher, source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        return await source.serve(stop)
    finally:
        publisher.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--source", default="synthetic")
    p.add_argument("--spool", required=True)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--limit", type=int, default=None, help="readings in all, then idle")
    p.add_argument("--status-file", required=True)
    p.add_argument("--frame-ms", type=int, default=200)
    p.add_argument("--max-bytes", type=int, default=1 << 30)
    p.add_argument("--segment-bytes", type=int, default=1 << 20)
    p.add_argument("--policy", default="drop-oldest")
    p.add_argument("--fsync-ms", type=int, default=1000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(_serve(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
