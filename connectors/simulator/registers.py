"""Tag values to and from Modbus registers, as the catalog's register map says.

32-bit types take two registers, high word first, big-endian within each word: a float32
is ``struct.pack('>f', v)`` split into two 16-bit registers.
"""

from __future__ import annotations

import math
import struct

from schemas.catalog import ModbusRegister

__all__ = ["decode", "encode"]


def _clamp_int(value: float, lo: int, hi: int) -> int:
    if not math.isfinite(value):
        return 0
    return min(max(round(value), lo), hi)


def encode(value: float, reg: ModbusRegister) -> list[int]:
    """The register words (or, for bool, one 0/1) that hold ``value``."""
    if reg.type == "float32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        return [hi, lo]
    if reg.type == "uint32":
        hi, lo = struct.unpack(">HH", struct.pack(">I", _clamp_int(value, 0, 0xFFFFFFFF)))
        return [hi, lo]
    if reg.type == "uint16":
        return [_clamp_int(value, 0, 0xFFFF)]
    if reg.type == "int16":
        return [_clamp_int(value, -0x8000, 0x7FFF) & 0xFFFF]
    return [1 if value else 0]  # bool


def decode(words: list[int], reg: ModbusRegister) -> float:
    """The value that ``words`` (as many as ``reg.width``) hold."""
    if reg.type == "float32":
        return float(struct.unpack(">f", struct.pack(">HH", words[0], words[1]))[0])
    if reg.type == "uint32":
        return float((words[0] << 16) | words[1])
    if reg.type == "int16":
        return float(words[0] - 0x10000 if words[0] & 0x8000 else words[0])
    return float(words[0])  # uint16, bool
