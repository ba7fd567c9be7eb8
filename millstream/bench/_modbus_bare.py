"""The Modbus baseline of ``millstream bench ingest``: one register per request.

A pymodbus async client (the connector's client) that reads every register of the
catalog source's map, one ``read_holding_registers(address, count=1)`` at a time, round
after round for ``--seconds``, and reports the registers it read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from millstream.bench._proc import send_line
from schemas.catalog import load_catalog
from schemas.modbus import parse_endpoint

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _addresses(catalog_path: str, source: str) -> list[tuple[int, int]]:
    """(unit id, address) of every register the source's tags occupy."""
    catalog = load_catalog(catalog_path)
    out: list[tuple[int, int]] = []
    for m in catalog.machines_of(source):
        for t in m.tags:
            if t.modbus is not None:
                unit = m.unit_id if t.modbus.unit_id is None else t.modbus.unit_id
                out.extend((unit, a) for a in range(t.modbus.address, t.modbus.end))
    return out


async def _run(args: argparse.Namespace) -> None:
    registers = _addresses(args.catalog, args.source)
    host, port = parse_endpoint(args.endpoint)
    client = AsyncModbusTcpClient(host, port=port, timeout=1.0, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise SystemExit(f"cannot reach the Modbus server at {args.endpoint}")
    read = errors = requests = 0
    try:
        send_line(sys.stdout, event="ready", registers=len(registers))
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        while time.monotonic() < deadline:
            for unit, address in registers:
                requests += 1
                if requests % 64 == 0 and time.monotonic() >= deadline:
                    break
                try:
                    rr = await client.read_holding_registers(address, count=1, device_id=unit)
                except (TimeoutError, ModbusException, OSError):
                    errors += 1
                    continue
                if rr.isError():
                    errors += 1
                else:
                    read += 1
        seconds = time.monotonic() - t0
    finally:
        client.close()
    send_line(sys.stdout, event="done", registers=read, errors=errors,
              seconds=round(seconds, 3), per_s=round(read / seconds) if seconds else None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
