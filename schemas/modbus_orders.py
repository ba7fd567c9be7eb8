"""Byte and word orders of Modbus values: between register words and the value's bytes.

The letters name the value's bytes from most significant (A) to least; the words appear
on the wire in the order given, each word high byte first. CDAB reverses the words, BADC
swaps the bytes inside each word, DCBA does both (fully little-endian); on one word,
ABCD = CDAB and BADC = DCBA. Each reordering is its own inverse.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from schemas.registers import ORDERS

__all__ = ["check_words", "value_bytes", "wire_words"]


def check_words(words: Sequence[int]) -> list[int]:
    """``words`` as ints; ValueError if one is not a 16-bit register value."""
    out: list[int] = []
    for i, word in enumerate(words):
        try:
            value = operator.index(word)
        except TypeError as exc:
            raise ValueError(f"register word {i} is {word!r}, not an integer") from exc
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"register word {i} is {value}, outside 0..65535")
        out.append(value)
    return out


def _reorder(words: list[int], order: str) -> list[int]:
    """Wire words <-> value words (A first, each word big-endian): the same both ways."""
    if order not in ORDERS:
        raise ValueError(f"unknown Modbus byte/word order {order!r}; use one of "
                         f"{', '.join(ORDERS)}")
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    if order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def value_bytes(words: Sequence[int], order: str) -> bytes:
    """The value's bytes, most significant first, from the words as read in ``order``."""
    value_words = _reorder(check_words(words), order)
    return b"".join(w.to_bytes(2, "big") for w in value_words)


def wire_words(data: bytes, order: str) -> list[int]:
    """The register words, in wire order, holding ``data`` (most significant byte first)."""
    if len(data) % 2:
        raise ValueError(f"{len(data)} bytes do not fill whole 16-bit registers")
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return _reorder(words, order)
