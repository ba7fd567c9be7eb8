"""Real pymodbus servers for the Modbus tests, and register words built with ``struct``.

The words are computed here from ``struct`` and the orders' definitions (A = most
significant byte; words go on the wire in the order given, high byte first), not with
millstream's codec, so the tests check the codec against an independent reference.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from connectors.base import Source
from schemas.readings import Reading
from tests.unit.test_connectors_base import MemoryPublisher

__all__ = ["device", "readings_of", "run_source", "serve", "words"]


def words(fmt: str, value: Any, order: str = "ABCD") -> list[int]:
    """The wire words of ``value`` packed big-endian with ``fmt`` (e.g. ``>f``), in ``order``."""
    data = struct.pack(fmt, value)
    if len(data) % 2:
        data += b"\x00"
    value_words = [data[i : i + 2] for i in range(0, len(data), 2)]  # A B | C D ...
    if order in ("CDAB", "DCBA"):
        value_words = value_words[::-1]
    if order in ("BADC", "DCBA"):
        value_words = [w[::-1] for w in value_words]
    return [int.from_bytes(w, "big") for w in value_words]


def _regs(image: dict[int, int], size: int) -> list[SimData]:
    values = [image.get(i, 0) for i in range(size)]
    return [SimData(0, values=values, datatype=DataType.REGISTERS)]


def device(unit: int, *, holding: dict[int, int] | None = None,
           inputs: dict[int, int] | None = None, discrete: dict[int, bool] | None = None,
           coils: dict[int, bool] | None = None, size: int = 64,
           action: SimAction | None = None) -> SimDevice:
    """A device with four separate tables of ``size`` entries, filled from the images
    (address -> word or bit); addresses not given hold 0 / False."""
    def bits(image: dict[int, bool] | None) -> list[SimData]:
        values = [bool((image or {}).get(i, False)) for i in range(size)]
        return [SimData(0, values=values, datatype=DataType.BITS)]

    return SimDevice(id=unit, simdata=(bits(coils), bits(discrete),
                                       _regs(holding or {}, size), _regs(inputs or {}, size)),
                     action=action)


async def serve(devices: list[SimDevice], port: int, *, framer: FramerType = FramerType.SOCKET,
                trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU] | None = None,
                ignore_missing_devices: bool = False) -> ModbusTcpServer:
    """A pymodbus TCP server on 127.0.0.1:port, started in the background."""
    server = ModbusTcpServer(devices, address=("127.0.0.1", port), framer=framer,
                             trace_pdu=trace_pdu, ignore_missing_devices=ignore_missing_devices)
    await server.serve_forever(background=True)
    return server


async def run_source(source: Source, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await source.serve(stop)


def readings_of(pub: MemoryPublisher) -> list[Reading]:
    return [r for frame in pub.sent for r in frame.readings()]
