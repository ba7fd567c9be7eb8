"""The OPC-UA baseline of ``millstream bench ingest``: a bare asyncua client that counts.

Subscribes to the catalog source's nodes with the connector's chunking and intervals
(subscriptions of ``--chunk`` items, sampling = publishing = the source's ``interval_ms``,
the async-iterator delivery the connector uses) and only counts data changes: all of
them, and those whose value lies in [``--first``, ``--last``] (the server's rounds of
this run). Reports ``ready`` once the initial values are in, ``count`` on request and
``done`` when stdin says stop or closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, Subscription

from millstream.bench._proc import send_line
from schemas.catalog import load_catalog
from schemas.opcua import parse_node_ref
from schemas.opcua_nodes import to_nodeid

__all__ = ["main"]

logger = logging.getLogger(__name__)


BUCKET_MS = 10  # latency histogram resolution
BUCKETS = 1000  # up to 10 s; later ones land in the last bucket


class _Counts:
    def __init__(self, first: float, last: float) -> None:
        self.first, self.last = first, last
        self.total = 0
        self.in_range = 0
        self.last_at = 0.0
        self.latency = [0] * BUCKETS  # source timestamp -> received, per BUCKET_MS

    def percentile(self, q: float) -> float | None:
        rank, seen = q * self.in_range, 0
        for i, n in enumerate(self.latency):
            seen += n
            if n and seen >= rank:
                return float((i + 1) * BUCKET_MS)
        return None

    def report(self, event: str) -> None:
        send_line(sys.stdout, event=event, total=self.total, in_range=self.in_range,
                  last_at=self.last_at, latency_ms={"p50": self.percentile(0.5),
                                                    "p99": self.percentile(0.99),
                                                    "max": self.percentile(1.0)})


async def _consume(sub: Subscription, counts: _Counts) -> None:
    lo, hi, hist = counts.first, counts.last, counts.latency
    async for ev in sub:
        if isinstance(ev, DataChangeEvent):
            counts.total += 1
            if lo <= ev.value <= hi:
                counts.in_range += 1
                counts.last_at = now = time.time()
                stamp = ev.data.monitored_item.Value.SourceTimestamp
                if stamp is not None:
                    ms = (now - stamp.replace(tzinfo=UTC).timestamp()) * 1000
                    hist[min(int(ms // BUCKET_MS), BUCKETS - 1)] += 1


async def _nodeids(client: Client, catalog_path: str, source: str) -> list[ua.NodeId]:
    catalog = load_catalog(catalog_path)
    spec = catalog.source(source)
    indices: dict[str, int] = {}
    out = []
    for m in catalog.machines_of(source):
        for tag in m.tags:
            ref = parse_node_ref(str(tag.node))
            uri = spec.namespaces.get(str(ref.namespace), str(ref.namespace))
            if uri not in indices:
                indices[uri] = int(await client.get_namespace_index(uri))
            out.append(to_nodeid(ref, indices[uri]))
    return out


async def _run(args: argparse.Namespace) -> None:
    interval = float(load_catalog(args.catalog).source(args.source).interval_ms)
    client = Client(args.endpoint, timeout=10)
    await client.connect()
    counts = _Counts(args.first, args.last)
    tasks = []
    try:
        nodeids = await _nodeids(client, args.catalog, args.source)
        t0 = time.monotonic()
        for start in range(0, len(nodeids), args.chunk):
            sub = await client.create_subscription(interval, None, queue_maxsize=0)
            await sub.subscribe_data_change(
                [client.get_node(n) for n in nodeids[start : start + args.chunk]],
                sampling_interval=ua.Double(interval))
            tasks.append(asyncio.create_task(_consume(sub, counts)))
        deadline = time.monotonic() + 60
        while counts.total < len(nodeids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        send_line(sys.stdout, event="ready", tags=len(nodeids), initial=counts.total,
                  subscribe_s=round(time.monotonic() - t0, 2))
        while line := await asyncio.to_thread(sys.stdin.readline):
            if json.loads(line).get("cmd") == "stop":
                break
            counts.report("count")
        counts.report("done")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.disconnect()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--first", type=float, required=True)
    p.add_argument("--last", type=float, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
