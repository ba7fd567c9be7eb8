"""The catalog's Modbus encoding: how a tag's value sits in 16-bit registers.

32-bit types (float32, uint32) take two registers, high word first, each word big-endian:
a float32 is ``struct.pack('>f', v)`` split in two. int16 is two's complement; a bool in
a register is 0/1. Coil and discrete tables hold bits. Connectors decode with this,
the executor and the simulator encode with it: one byte order for all.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from schemas.exceptions import CatalogError

__all__ = ["BIT_TABLES", "INT_RANGES", "decode", "encode", "parse_endpoint"]

BIT_TABLES = frozenset({"coil", "discrete"})
INT_RANGES: dict[str, tuple[int, int]] = {
    "uint16": (0, 0xFFFF), "int16": (-0x8000, 0x7FFF), "uint32": (0, 0xFFFF_FFFF),
}
_FORMATS = {"float32": ">f", "uint32": ">I", "int16": ">h", "uint16": ">H", "bool": ">H"}


def encode(value: float, reg_type: str) -> list[int]:
    """The register words holding ``value``; ValueError if it does not fit ``reg_type``."""
    fmt = _FORMATS.get(reg_type)
    if fmt is None:
        raise ValueError(f"unknown Modbus register type {reg_type!r}")
    if reg_type == "float32":
        raw = struct.pack(fmt, value)
    elif reg_type == "bool":
        raw = struct.pack(fmt, 1 if value else 0)
    else:
        lo, hi = INT_RANGES[reg_type]
        if not math.isfinite(value) or not lo <= round(value) <= hi:
            raise ValueError(f"{value:g} does not fit a {reg_type} register (range {lo}..{hi})")
        raw = struct.pack(fmt, round(value))
    return list(struct.unpack(f">{len(raw) // 2}H", raw))


def decode(words: Sequence[int], reg_type: str) -> float:
    """The value held by ``words`` (as many as the type is wide)."""
    fmt = _FORMATS.get(reg_type)
    if fmt is None:
        raise ValueError(f"unknown Modbus register type {reg_type!r}")
    raw = struct.pack(f">{len(words)}H", *(int(w) & 0xFFFF for w in words))
    if reg_type == "bool":
        return 1.0 if struct.unpack(fmt, raw)[0] else 0.0
    return float(struct.unpack(fmt, raw)[0])


def parse_endpoint(endpoint: str, default_port: int = 502) -> tuple[str, int]:
    """``host:port`` (optionally ``tcp://`` or ``modbus://`` in front) -> (host, port)."""
    text = endpoint.strip()
    for scheme in ("modbus+tcp://", "modbus://", "tcp://"):
        text = text.removeprefix(scheme)
    host, sep, port_text = text.rstrip("/").rpartition(":")
    if not sep:
        host, port_text = text.rstrip("/"), str(default_port)
    host = host.strip("[]")
    port = int(port_text) if port_text.isdigit() else -1
    if not host or not 0 < port < 65536:
        raise CatalogError(
            f"Modbus endpoint {endpoint!r} is not host:port; write it like 127.0.0.1:5020"
        )
    return host, port
