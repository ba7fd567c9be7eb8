"""The catalog's Modbus codec: how a tag's value sits in 16-bit registers.

One codec for every stage that touches registers: connectors decode with it, the executor
and the simulator encode with it. :func:`decode` / :func:`encode` handle the raw value of
a type in a byte/word order; :func:`decode_register` / :func:`encode_register` add a
register map entry's scale and offset (``value = raw * scale + offset``).

Orders: the letters name the bytes of the value from most significant (A) to least, and
the register words appear on the wire in the order given (each word's high byte first,
as Modbus sends it). For 32 bits: ABCD is big-endian (high word first), CDAB swaps the
words (low word first), BADC swaps the bytes inside each word (high word first) and DCBA
is fully little-endian. The same rule holds for any width: CDAB reverses the words
(pymodbus ``word_order="little"``), BADC swaps the bytes in each word, DCBA does both. A
16-bit value is AB in ABCD/CDAB and BA in BADC/DCBA. Strings are bytes in register order
after applying the order, so ABCD puts the first character in the first word's high byte.

Types: int16/uint16/int32/uint32/int64/uint64 (two's complement), float32/float64 (IEEE
754; a register holding Inf or NaN decodes to it, and callers flag the reading BAD),
``bool`` (a whole register read as 0/1), ``bit`` (bit N of a register, 0 = least
significant; writing it is a read-modify-write) and ``string`` (``length`` bytes, two per
register, NUL padded). Coil and discrete tables hold single bits (``bool``).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from typing import Literal, overload

from schemas.exceptions import CatalogError
from schemas.modbus_orders import value_bytes, wire_words
from schemas.registers import ORDERS, ModbusRegister

__all__ = [
    "BIT_TABLES",
    "FLOAT_TYPES",
    "INT_RANGES",
    "ORDERS",
    "WIDTHS",
    "decode",
    "decode_register",
    "encode",
    "encode_register",
    "parse_endpoint",
]

logger = logging.getLogger(__name__)

BIT_TABLES = frozenset({"coil", "discrete"})
INT_RANGES: dict[str, tuple[int, int]] = {
    "uint16": (0, 0xFFFF), "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFF_FFFF), "int32": (-0x8000_0000, 0x7FFF_FFFF),
    "uint64": (0, 2**64 - 1), "int64": (-(2**63), 2**63 - 1),
}
FLOAT_TYPES: dict[str, float] = {  # the largest finite magnitude of each
    "float32": struct.unpack(">f", b"\x7f\x7f\xff\xff")[0], "float64": 1.7976931348623157e308,
}
_FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "float32": "f", "float64": "d", "bool": "H", "bit": "H",
}
# registers each fixed-width type occupies (a string's width follows from its length)
WIDTHS: dict[str, int] = {name: struct.calcsize(f">{fmt}") // 2 for name, fmt in _FORMATS.items()}
_STRIP = b"\x00 "


# a literal "string" gives str, any other type a float: the overlap is the intent
@overload
def decode(  # type: ignore[overload-overlap]
    words: Sequence[int], reg_type: Literal["string"], order: str = "ABCD", *,
    bit: int | None = None, length: int | None = None) -> str: ...
@overload
def decode(words: Sequence[int], reg_type: str, order: str = "ABCD", *,
           bit: int | None = None, length: int | None = None) -> float: ...
def decode(words: Sequence[int], reg_type: str, order: str = "ABCD", *,
           bit: int | None = None, length: int | None = None) -> float | str:
    """The raw value ``words`` hold (no scaling); a string for ``string``, else a float.

    ``words`` must be exactly as many as the type is wide (for a string, ``length`` bytes
    rounded up to whole registers, or any number without ``length``); ``bit`` is needed by
    type ``bit``. Numbers never fail on register contents: Inf and NaN come back as such,
    and 64-bit integers past 2**53 as their nearest float (which encodes back to them).
    """
    if reg_type == "string":
        expected = None if length is None else (length + 1) // 2
        data = _value_bytes(words, reg_type, order, expected)
        return _text(data if length is None else data[:length])
    fmt = _format(reg_type)
    _check_bit(reg_type, bit)
    data = _value_bytes(words, reg_type, order, WIDTHS[reg_type])
    number = struct.unpack(f">{fmt}", data)[0]
    if reg_type == "bool":
        return 1.0 if number else 0.0
    if reg_type == "bit":
        return float((number >> (bit or 0)) & 1)
    return float(number)


def encode(value: float | str, reg_type: str, order: str = "ABCD", *,
           length: int | None = None) -> list[int]:
    """The register words holding ``value`` in ``order``; ValueError if it does not fit.

    Integers are rounded; floats must be within the type's range (Inf and NaN are kept);
    a string is padded with NULs to ``length`` bytes (default: its own length).
    """
    if reg_type == "string":
        return wire_words(_pack_text(value, length), order)
    fmt = _format(reg_type)
    if isinstance(value, str):
        raise ValueError(f"{value!r} is text; a {reg_type} register holds a number")
    if reg_type == "bit":
        raise ValueError(
            "a bit is one of a register's 16 bits: writing it is a read-modify-write; "
            "use encode_register with the register's current word")
    if reg_type == "bool":
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{value} is not a bool (0/1) for a bool register")
        data = struct.pack(f">{fmt}", 1 if value else 0)
    elif reg_type in INT_RANGES:
        lo, hi = INT_RANGES[reg_type]
        # 2**64 - 1 and 2**63 - 1 have no float: their nearest floats stand for them
        n = (value if isinstance(value, int)
             else hi if value == float(hi) else round(value) if math.isfinite(value) else None)
        if n is None or not lo <= n <= hi:
            raise ValueError(f"{value!r} does not fit a {reg_type} register (range {lo}..{hi})")
        data = struct.pack(f">{fmt}", n)
    else:
        try:
            data = struct.pack(f">{fmt}", value)
        except (OverflowError, struct.error) as exc:
            top = FLOAT_TYPES[reg_type]
            raise ValueError(
                f"{value!r} does not fit a {reg_type} register (range -{top:g}..{top:g})"
            ) from exc
    return wire_words(data, order)


def decode_register(words: Sequence[int], reg: ModbusRegister) -> float | str:
    """The engineering value of ``reg`` from its registers: ``raw * scale + offset``.

    For a coil or discrete input, ``words`` is the one bit read.
    """
    if reg.type == "string":
        return decode(words, "string", reg.order, length=reg.length)
    return reg.to_engineering(decode(words, reg.type, reg.order, bit=reg.bit))


def encode_register(value: float | str, reg: ModbusRegister,
                    current: int | Sequence[int] | None = None) -> list[int]:
    """The words to write for ``reg`` to hold ``value`` (engineering units).

    A ``bit`` register needs ``current``, the register's word as read just before, and
    returns that word with the bit set (value non-zero) or cleared.
    """
    if reg.type == "string":
        return encode(value, "string", reg.order, length=reg.length)
    if isinstance(value, str):
        raise ValueError(f"{value!r} is text; a {reg.type} register holds a number")
    raw = reg.to_raw(value)
    if reg.type != "bit":
        return encode(raw, reg.type, reg.order)
    if current is None:
        raise ValueError(
            f"writing bit {reg.bit} of {reg.table} register {reg.address} is a "
            "read-modify-write: read the register first and pass its word as current")
    word = [current] if isinstance(current, int) else list(current)
    if math.isnan(raw):
        raise ValueError(f"{value} is not 0/1 for bit {reg.bit} of register {reg.address}")
    mask = 1 << (reg.bit or 0)
    held = round(decode(word, "uint16", reg.order))
    return encode(held | mask if raw else held & ~mask, "uint16", reg.order)


def _format(reg_type: str) -> str:
    fmt = _FORMATS.get(reg_type)
    if fmt is None:
        raise ValueError(f"unknown Modbus register type {reg_type!r}; use one of "
                         f"{', '.join([*_FORMATS, 'string'])}")
    return fmt


def _check_bit(reg_type: str, bit: int | None) -> None:
    if reg_type == "bit" and (bit is None or not 0 <= bit <= 15):
        raise ValueError(f"type bit needs bit 0..15 (0 = least significant), got {bit!r}")
    if reg_type != "bit" and bit is not None:
        raise ValueError(f"bit {bit} only applies to type bit, not {reg_type!r}")


def _value_bytes(words: Sequence[int], reg_type: str, order: str,
                 expected: int | None) -> bytes:
    """The value's bytes, most significant first, after checking the words' count."""
    if expected is not None and len(words) != expected:
        raise ValueError(f"a {reg_type} needs {expected} register(s), got {len(words)}: "
                         f"{list(words)!r}; check the register map's type and length")
    return value_bytes(words, order)


def _text(data: bytes) -> str:
    """Latin-1 text without trailing NULs/spaces; other control bytes become U+FFFD."""
    text = data.rstrip(_STRIP).decode("latin-1")
    return "".join(c if c.isprintable() or c in "\t\n\r" else "\ufffd" for c in text)


def _pack_text(value: float | str, length: int | None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text; a string register holds text")
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{value!r} has {value[exc.start]!r}, which is not Latin-1; "
                         "a Modbus string holds one byte per character") from exc
    size = len(data) if length is None else length
    if len(data) > size:
        raise ValueError(f"{value!r} is {len(data)} bytes, longer than the string's "
                         f"{size}; shorten it or raise the register map's length")
    return data.ljust(size + size % 2, b"\x00")


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
