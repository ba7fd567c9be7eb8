"""Measure `millstream browse opcua` on a generated server with N variables (default 100k).

Not a test: run it by hand, ``.venv/bin/python scripts/measure_browse.py [N]``. The server
runs in a child process (its own core), the walk and catalog in this one; prints the
server's build time, the walk's time and this process's peak memory as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.opcua_browse import Progress  # noqa: E402
from connectors.opcua_discover import browse_opcua, catalog_text  # noqa: E402
from millstream.stack.kafka import free_port  # noqa: E402
from schemas.catalog import Catalog, load_catalog  # noqa: E402


async def serve(port: int, count: int) -> None:
    from asyncua import Server, ua

    from tests.support.opcua_bulk import add_bulk

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bulk/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    started = time.monotonic()
    machines = await add_bulk(server, count)
    build = time.monotonic() - started
    await server.start()
    print(json.dumps({"build_s": round(build, 1), "machines": machines}), flush=True)
    await asyncio.sleep(3600)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("connectors").setLevel(logging.INFO)
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3])))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(count)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        built = json.loads(child.stdout.readline())
        url = f"opc.tcp://127.0.0.1:{port}/bulk/"
        started = time.monotonic()
        walk = asyncio.run(browse_opcua(url, progress=Progress(sys.stderr, every=2.0)))
        walked = time.monotonic() - started
        walk_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        text = catalog_text(walk, url, source=None, enterprise="e", site="s", max_nodes=None)
        Catalog.model_validate(yaml.load(text, Loader=yaml.CSafeLoader))  # as the command does
        command_s = time.monotonic() - started
        command_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bulk.yaml"
            path.write_text(text)
            t0 = time.monotonic()
            catalog = load_catalog(path)
            load_s = time.monotonic() - t0
        total = time.monotonic() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({
            "variables": count, **built, "walk_s": round(walked, 1),
            "command_s": round(command_s, 1),
            "peak_rss_mb_command": round(command_rss_mb),
            "walk_plus_catalog_s": round(total, 1), "load_catalog_s": round(load_s, 1),
            "nodes_visited": walk.visited, "variables_found": len(walk.variables),
            "tags_in_catalog": len(catalog.tags()), "browse_requests": walk.browse_requests,
            "catalog_bytes": len(text), "peak_rss_mb_after_walk": round(walk_rss_mb),
            "peak_rss_mb": round(peak_mb)}))
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    main()
