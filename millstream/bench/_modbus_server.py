"""The Modbus TCP server of ``millstream bench ingest``, run as its own process.

One pymodbus device per machine of the catalog's Modbus source, at its unit id, with
holding registers covering the machine's map. Every register a request reads is
incremented, so each read returns fresh values (a connector that only reported changes
would still see every register change).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from millstream.bench._proc import send_line
from schemas.catalog import load_catalog

__all__ = ["main"]

logger = logging.getLogger(__name__)


async def _tick(function_code: int, start_address: int, address: int, count: int,
                registers: list[int], set_values: list[int] | list[bool] | None,
                ) -> ExcCodes | None:
    """pymodbus hook on every request: bump the registers being read."""
    if set_values is None:
        offset = address - start_address
        registers[offset : offset + count] = [
            (v + 1) & 0xFFFF for v in registers[offset : offset + count]]
    return None


def _devices(catalog_path: str, source: str) -> list[SimDevice]:
    catalog = load_catalog(catalog_path)
    devices = []
    for m in catalog.machines_of(source):
        size = max((t.modbus.end for t in m.tags if t.modbus is not None), default=1)
        devices.append(SimDevice(
            id=m.unit_id, simdata=[SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
            action=_tick))
    return devices


async def _serve(args: argparse.Namespace) -> None:
    devices = _devices(args.catalog, args.source)
    server = ModbusTcpServer(devices, address=("127.0.0.1", args.port))
    await server.serve_forever(background=True)
    send_line(sys.stdout, event="ready", endpoint=f"127.0.0.1:{args.port}",
              devices=len(devices))
    try:
        while await asyncio.to_thread(sys.stdin.readline):
            pass
    finally:
        await server.shutdown()


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
