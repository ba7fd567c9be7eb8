"""The plant simulator of ``millstream bench latency``, run as its own process.

Serves the catalog's plant (OPC-UA and Modbus, no faults) and takes commands on stdin, one
JSON object a line: ``{"id": n, "force": "machine/tag", "value": 120.0}`` holds the tag at
the value (``null`` releases it) and answers ``{"event": "forced", "id": n, "ts": ms}``, the
source timestamp the change was served with. Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from connectors.simulator import FaultPlan, PlantSimulator
from millstream.bench._proc import send_line
from schemas.catalog import load_catalog

__all__ = ["main"]

logger = logging.getLogger(__name__)


async def _serve(args: argparse.Namespace) -> None:
    catalog = load_catalog(args.catalog)
    sim = PlantSimulator(catalog, opcua_port=args.opcua_port, modbus_port=args.modbus_port,
                         seed=args.seed, faults=FaultPlan([]), tick_s=args.tick_s)
    async with sim:
        send_line(sys.stdout, event="ready", opcua=sim.opcua_endpoint,
                  modbus=sim.modbus_endpoint)
        while line := await asyncio.to_thread(sys.stdin.readline):
            try:
                cmd = json.loads(line)
                value = cmd["value"]
                ts = await sim.force(str(cmd["force"]), None if value is None else float(value))
            except Exception as exc:  # a bad command is answered, never fatal
                logger.exception("bad command %r", line)
                send_line(sys.stdout, event="error", line=line.strip(), error=repr(exc))
                continue
            send_line(sys.stdout, event="forced", id=cmd.get("id"), ts=ts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", required=True)
    p.add_argument("--opcua-port", type=int, required=True)
    p.add_argument("--modbus-port", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tick-s", type=float, default=0.1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
