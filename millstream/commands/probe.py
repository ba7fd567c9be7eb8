"""``millstream probe modbus HOST:PORT``: read raw registers and show them decoded every way.

A vendor's map rarely says which byte and word order a device uses. The probe reads
``--count`` registers at ``--address`` and prints every type decoded from the first
register in all four orders side by side, with the raw words in hex, so an engineer who
knows roughly what the value should be finds the right type and order in a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import struct
from typing import TYPE_CHECKING

from schemas.modbus import ORDERS, WIDTHS, decode
from schemas.modbus_orders import value_bytes
from schemas.modbus_wire import ModbusIOError, make_client, read_table, span_text

if TYPE_CHECKING:
    from millstream.commands import Add
    from millstream.settings import Settings

__all__ = ["PROBE_TYPES", "decode_all", "probe_modbus", "register", "render"]

logger = logging.getLogger(__name__)

PROBE_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
               "float64", "string")
_INTS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q",
         "uint64": ">Q"}


def register(add: Add) -> None:
    p = add("probe", cmd_probe,
            "read registers from a device and print them decoded as every type and order")
    p.add_argument("protocol", choices=["modbus"], help="the protocol to probe")
    p.add_argument("endpoint", metavar="HOST:PORT",
                   help="the device (or its gateway), e.g. 10.0.0.7:502")
    p.add_argument("--unit", type=int, default=1, help="unit (slave) id, default 1")
    p.add_argument("--address", type=int, default=0,
                   help="0-based register address (Modicon 40101 is holding 100)")
    p.add_argument("--count", type=int, default=4, help="registers to read, 1..125 (default 4)")
    p.add_argument("--table", choices=["holding", "input"], default="holding")
    p.add_argument("--framer", choices=["tcp", "rtu"], default="tcp",
                   help="tcp: Modbus TCP; rtu: RTU frames over TCP (serial gateways)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")


def cmd_probe(args: argparse.Namespace, settings: Settings) -> int:
    if not getattr(args, "verbose", False):  # one clear line on failure, not pymodbus' log
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if not 1 <= args.count <= 125:
        raise ModbusIOError("length", f"--count {args.count}: read 1..125 registers at once")
    if not 0 <= args.address <= 65535 - args.count + 1:
        raise ModbusIOError("length", f"--address {args.address}: registers are 0..65535; "
                            "give the 0-based protocol address (Modicon 40101 is 100)")
    words = asyncio.run(probe_modbus(args.endpoint, table=args.table, address=args.address,
                                     count=args.count, unit=args.unit, framer=args.framer,
                                     timeout_s=args.timeout))
    print(render(words, endpoint=args.endpoint, table=args.table, address=args.address,
                 unit=args.unit))
    return 0


async def probe_modbus(endpoint: str, *, table: str, address: int, count: int, unit: int,
                       framer: str = "tcp", timeout_s: float = 2.0) -> list[int]:
    """The ``count`` register words at ``address``; ModbusIOError says why not."""
    client = make_client(endpoint, framer=framer, timeout_s=timeout_s)
    try:
        try:
            connected = bool(await client.connect()) and client.connected
        except (OSError, TimeoutError) as exc:
            logger.debug("connect to %s failed: %r", endpoint, exc)
            connected = False
        if not connected:
            raise ModbusIOError("connection", f"cannot reach Modbus device at {endpoint}: "
                                "check the host, the port and that nothing blocks it")
        try:
            data = await read_table(client, table, address, count, unit)
        except ModbusIOError as exc:
            raise ModbusIOError(exc.kind, f"Modbus device at {endpoint}: {exc}",
                                exc.code) from exc
        return [int(w) for w in data]
    finally:
        client.close()


def decode_all(words: list[int]) -> dict[str, dict[str, str]]:
    """Every probe type in every order, as text, decoded from the start of ``words``; a type
    wider than the words read says how many it needs. Strings take all the words."""
    out: dict[str, dict[str, str]] = {}
    for kind in PROBE_TYPES:
        width = len(words) if kind == "string" else WIDTHS[kind]
        row: dict[str, str] = {}
        for order in ORDERS:
            if len(words) < width:
                row[order] = f"(needs {width})"
            else:
                row[order] = _text(kind, words[:width], order)
        out[kind] = row
    return out


def _text(kind: str, words: list[int], order: str) -> str:
    if kind == "string":
        return repr(decode(words, "string", order))
    if kind in _INTS:  # exact, not through a float: 64-bit counters matter to the digit
        return str(struct.unpack(_INTS[kind], value_bytes(words, order))[0])
    value = decode(words, kind, order)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.7g}" if kind == "float32" else f"{value:.15g}"


def render(words: list[int], *, endpoint: str, table: str, address: int, unit: int) -> str:
    """The probe's report: a header, the raw words, then one row per type, one column per
    order (ABCD = big-endian, CDAB = word swap, BADC = byte swap, DCBA = little-endian)."""
    lines = [f"Modbus {endpoint}: {span_text(table, address, len(words), unit)}",
             "raw: " + "  ".join(f"{address + i}=0x{w:04X}" for i, w in enumerate(words))]
    table_cells = decode_all(words)
    widths = {o: max(len(o), *(len(table_cells[k][o]) for k in PROBE_TYPES)) for o in ORDERS}
    head = "type     " + "  ".join(o.ljust(widths[o]) for o in ORDERS)
    lines += ["", head.rstrip(), "-" * len(head.rstrip())]
    for kind in PROBE_TYPES:
        cells = "  ".join(table_cells[kind][o].ljust(widths[o]) for o in ORDERS)
        lines.append(f"{kind:<9}{cells}".rstrip())
    lines.append("")
    lines.append("ABCD big-endian | CDAB word swap | BADC byte swap | DCBA little-endian; "
                 f"values start at register {address}")
    return "\n".join(lines)
