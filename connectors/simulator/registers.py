"""The simulator's register image policy: a simulated device stores whatever its physics
computes, so values are clamped into the register's range before the catalog's encoding
(:mod:`schemas.modbus`) packs them.
"""

from __future__ import annotations

import math

from schemas.catalog import ModbusRegister
from schemas.modbus import INT_RANGES
from schemas.modbus import decode as decode_words
from schemas.modbus import encode as encode_words

__all__ = ["decode", "encode"]


def encode(value: float, reg: ModbusRegister) -> list[int]:
    """The register words (or, for bool, one 0/1) that hold ``value``, clamped to fit."""
    if reg.type in INT_RANGES:
        lo, hi = INT_RANGES[reg.type]
        value = min(max(round(value), lo), hi) if math.isfinite(value) else 0
    return encode_words(value, reg.type)


def decode(words: list[int], reg: ModbusRegister) -> float:
    """The value that ``words`` (as many as ``reg.width``) hold."""
    return decode_words(words, reg.type)
