"""The simulator's register image policy: a simulated device stores whatever its physics
computes, so values are clamped into the register's range before the catalog's codec
(:func:`schemas.modbus.encode_register`: type, byte/word order, scale, offset) packs them.
"""

from __future__ import annotations

import math

from schemas.catalog import ModbusRegister
from schemas.modbus import FLOAT_TYPES, INT_RANGES, decode_register, encode_register
from schemas.modbus import encode as encode_words

__all__ = ["decode", "encode"]


def encode(value: float, reg: ModbusRegister, current: list[int] | None = None) -> list[int]:
    """The register words that hold ``value`` (engineering units), clamped to fit.

    A ``bit`` register needs ``current``, the image's word, and returns it with the bit
    set or cleared; a ``string`` register holds the value as text.
    """
    if reg.type == "string":
        text = f"{value:g}"[: reg.length]
        return encode_register(text, reg)
    if reg.type == "bit":
        return encode_register(value if math.isfinite(value) else 0.0, reg, current)
    raw: float = reg.to_raw(value) if math.isfinite(value) else 0.0
    if reg.type in INT_RANGES:
        lo, hi = INT_RANGES[reg.type]
        raw = min(max(round(raw), lo), hi)
    elif reg.type in FLOAT_TYPES:
        top = FLOAT_TYPES[reg.type]
        raw = min(max(raw, -top), top)
    return encode_words(raw, reg.type, reg.order)


def decode(words: list[int], reg: ModbusRegister) -> float:
    """The value that ``words`` (as many as ``reg.width``) hold; a string's as 0."""
    value = decode_register(words, reg)
    return 0.0 if isinstance(value, str) else value
