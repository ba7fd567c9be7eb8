"""Modbus on the wire: a client with the source's framing, and requests that either return
what was asked for or raise a :class:`ModbusIOError` saying why in words a person can act on.

Shared by the connector, the executor and ``millstream probe`` so that they frame, time out
and name the protocol's exception codes the same way. ``framer: rtu`` sends RTU frames (unit,
PDU, CRC) over the TCP socket, as serial-to-Ethernet gateways in transparent mode expect;
``tcp`` is Modbus TCP (MBAP header). pymodbus serialises the requests on one client (one
transaction at a time under a lock), so one client per endpoint is one request in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from schemas.exceptions import MillstreamError
from schemas.modbus import BIT_TABLES, parse_endpoint

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusIOError",
    "exception_text",
    "make_client",
    "read_table",
    "span_text",
    "write_registers",
]

logger = logging.getLogger(__name__)

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (the device is still busy with a long command)",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_NOUNS = {"holding": "holding register", "input": "input register", "coil": "coil",
          "discrete": "discrete input"}
Kind = Literal["exception", "timeout", "length", "connection"]


class ModbusIOError(MillstreamError):
    """A Modbus request did not give what was asked for.

    ``kind``: ``exception`` (the device answered with exception ``code``), ``timeout`` (no
    answer in time), ``length`` (an answer of the wrong size) or ``connection`` (no link).
    """

    def __init__(self, kind: Kind, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


def exception_text(code: int) -> str:
    """``2`` -> ``illegal data address (exception 2)``."""
    return f"{EXCEPTION_NAMES.get(code, 'unknown exception')} (exception {code})"


def span_text(table: str, address: int, count: int, unit: int) -> str:
    """``holding registers 100..103, unit 3``: what a request covered, for messages."""
    noun = _NOUNS.get(table, table)
    where = f"{noun} {address}" if count == 1 else f"{noun}s {address}..{address + count - 1}"
    return f"{where}, unit {unit}"


def make_client(endpoint: str, *, framer: str = "tcp", timeout_s: float = 1.0
                ) -> AsyncModbusTcpClient:
    """An unconnected client for ``host:port``; the caller connects and reconnects (pymodbus'
    own reconnection is off) and each request waits at most ``timeout_s``, without retries."""
    if framer not in ("tcp", "rtu"):
        raise ValueError(f"Modbus framer {framer!r} is not tcp or rtu")
    host, port = parse_endpoint(endpoint)
    return AsyncModbusTcpClient(
        host, port=port, framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
        timeout=timeout_s, retries=0, reconnect_delay=0)


async def read_table(client: AsyncModbusTcpClient, table: str, address: int, count: int,
                     unit: int) -> list[int] | list[bool]:
    """Exactly ``count`` registers (or bits) of ``table`` from ``address`` at ``unit``."""
    readers = {"holding": client.read_holding_registers, "input": client.read_input_registers,
               "coil": client.read_coils, "discrete": client.read_discrete_inputs}
    where = span_text(table, address, count, unit)
    response = await _request(readers[table](address, count=count, device_id=unit),
                              f"reading {where}")
    if table in BIT_TABLES:
        bits: list[bool] = list(response.bits)
        if len(bits) < count:  # devices pad bits to whole bytes: more is fine, fewer is not
            raise ModbusIOError("length", f"reading {where}: the device answered {len(bits)} "
                                f"bit(s) instead of {count}; check the device's map")
        return bits[:count]
    words: list[int] = list(response.registers)
    if len(words) != count:
        raise ModbusIOError("length", f"reading {where}: the device answered {len(words)} "
                            f"register(s) instead of {count}; lower max_block if it cuts "
                            "long reads short")
    return words


async def write_registers(client: AsyncModbusTcpClient, address: int, words: Sequence[int],
                          unit: int) -> None:
    """Write ``words`` to holding registers from ``address`` (function 16)."""
    where = span_text("holding", address, len(words), unit)
    await _request(client.write_registers(address, list(words), device_id=unit),
                   f"writing {where}")


async def _request(call: Awaitable[Any], what: str) -> Any:
    """Await a pymodbus request; its failures become a :class:`ModbusIOError`."""
    try:
        response = await call
    except ConnectionException as exc:
        raise ModbusIOError("connection", f"{what}: not connected ({exc})") from exc
    except (ModbusIOException, TimeoutError) as exc:
        # pymodbus reports a request without an answer (or a garbled one) as an IO exception
        why = ("no answer within the timeout; the device (or its gateway) may be off or the "
               "unit id wrong") if "No response" in str(exc) or isinstance(exc, TimeoutError) \
            else f"no usable answer ({exc})"
        raise ModbusIOError("timeout", f"{what}: {why}") from exc
    except (ModbusException, OSError) as exc:
        raise ModbusIOError("connection", f"{what}: {exc}") from exc
    if response.isError():
        code = int(getattr(response, "exception_code", 0))
        raise ModbusIOError("exception", f"{exception_text(code)} {what}", code)
    return response
