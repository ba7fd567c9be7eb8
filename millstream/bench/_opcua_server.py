"""The OPC-UA server of ``millstream bench ingest``, run as its own process.

Serves one Double variable per tag of the catalog's OPC-UA source, at the node id the
catalog gives it. On ``{"cmd": "run", "rounds": R}`` it writes every variable once per
second for R seconds, spread over each second in slices; round k writes the value k (the
rounds count on across runs), so a client can tell exactly which changes it received.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import time
from datetime import UTC, datetime

from asyncua import Server, ua

from millstream.bench._proc import send_line
from schemas.catalog import load_catalog
from schemas.opcua import parse_node_ref
from schemas.opcua_nodes import to_nodeid

__all__ = ["main"]

logger = logging.getLogger(__name__)

SLICES = 20  # writes per second are spread over this many slices


class _Bench:
    def __init__(self, server: Server, nodeids: list[ua.NodeId]) -> None:
        self.server = server
        self.nodeids = nodeids
        self.round = 0
        self.lag = 0.0  # the event loop's worst lateness during a run: answers wait this long

    async def watch_loop(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            late = time.monotonic() - t - 0.05
            if late > 0.5:
                logger.warning("event loop stalled for %.2fs", late)
            self.lag = max(self.lag, late)

    async def run(self, rounds: int) -> None:
        n = len(self.nodeids)
        per = -(-n // SLICES)
        first = self.round + 1
        self.lag = 0.0
        writes = 0
        behind = 0.0
        t0 = time.monotonic()
        start = time.time()
        for r in range(rounds):
            value = ua.Variant(float(self.round + 1), ua.VariantType.Double)
            for s in range(SLICES):
                delay = t0 + r + s / SLICES - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind = max(behind, -delay)
                now = datetime.now(UTC)
                dv = ua.DataValue(value, SourceTimestamp=now, ServerTimestamp=now)  # type: ignore[arg-type]
                for nodeid in self.nodeids[s * per : (s + 1) * per]:
                    await self.server.write_attribute_value(nodeid, dv)
                    writes += 1
            self.round += 1
        send_line(sys.stdout, event="done", first=first, last=self.round, rounds=rounds,
                  writes=writes, start=start, end=time.time(), behind_s=round(behind, 3),
                  loop_lag_s=round(self.lag, 3))


async def _build(server: Server, catalog_path: str, source: str) -> list[ua.NodeId]:
    catalog = load_catalog(catalog_path)
    spec = catalog.source(source)
    indices: dict[str, int] = {}
    nodeids = []
    for m in catalog.machines_of(source):
        folder = None
        for tag in m.tags:
            ref = parse_node_ref(str(tag.node))
            uri = spec.namespaces.get(str(ref.namespace), str(ref.namespace))
            if uri not in indices:
                indices[uri] = int(await server.register_namespace(uri))
            idx = indices[uri]
            if folder is None:
                folder = await server.nodes.objects.add_folder(idx, m.name)
            nodeid = to_nodeid(ref, idx)
            await folder.add_variable(nodeid, ua.QualifiedName(tag.name, idx),
                                      ua.Variant(0.0, ua.VariantType.Double))
            nodeids.append(nodeid)
    return nodeids


async def _serve(args: argparse.Namespace) -> None:
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/bench/"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_identity_tokens([ua.AnonymousIdentityToken])
    t0 = time.monotonic()
    nodeids = await _build(server, args.catalog, args.source)
    await server.start()
    # the address space lives as long as the server: keep it out of the collector's full
    # passes, which otherwise stall the loop for long enough to miss a client's 1 s probe
    gc.freeze()
    bench = _Bench(server, nodeids)
    watch = asyncio.create_task(bench.watch_loop())
    send_line(sys.stdout, event="ready", endpoint=endpoint, tags=len(nodeids),
              build_s=round(time.monotonic() - t0, 2))
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = json.loads(line)
            if cmd.get("cmd") == "run":
                await bench.run(int(cmd["rounds"]))
    finally:
        watch.cancel()
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
