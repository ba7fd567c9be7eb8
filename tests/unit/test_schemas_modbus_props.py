"""Property tests of the Modbus codec: every type in every byte/word order round-trips."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from schemas.modbus import (
    INT_RANGES,
    ORDERS,
    WIDTHS,
    decode,
    decode_register,
    encode,
    encode_register,
)
from schemas.registers import ModbusRegister

FLOAT_WIDTHS = {"float32": 32, "float64": 64}
NUMERIC = [*INT_RANGES, *FLOAT_WIDTHS, "bool"]
PYMODBUS = {  # our big-endian-word orders as pymodbus names them (it never swaps bytes)
    name: getattr(ModbusTcpClient.DATATYPE, name.upper()) for name in [*INT_RANGES, *FLOAT_WIDTHS]
}
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
           "float32": "f", "float64": "d", "bool": "H"}
WORD = st.integers(0, 0xFFFF)
# printable Latin-1 text whose end is not padding (decode strips trailing NULs and spaces)
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(str.isprintable),
               max_size=40).map(str.rstrip)


def _words(kind: str) -> st.SearchStrategy[list[int]]:
    return st.lists(WORD, min_size=WIDTHS[kind], max_size=WIDTHS[kind])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", list(INT_RANGES))
@given(data=st.data())
def test_integers_round_trip_over_their_full_range(kind: str, order: str, data: st.DataObject
                                                   ) -> None:
    lo, hi = INT_RANGES[kind]
    n = data.draw(st.integers(lo, hi))
    words = encode(n, kind, order)
    assert len(words) == WIDTHS[kind] and all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, kind, order) == float(n)
    fmt = struct.Struct(">" + {1: "h", 2: "i", 4: "q"}[WIDTHS[kind]])
    raw = struct.pack(f">{len(words)}H", *encode(n, kind))
    assert (fmt.unpack(raw)[0] - n) % 2 ** (16 * WIDTHS[kind]) == 0  # two's complement


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", list(FLOAT_WIDTHS))
@given(data=st.data())
def test_floats_round_trip_including_subnormals_inf_and_nan(kind: str, order: str,
                                                            data: st.DataObject) -> None:
    x = data.draw(st.floats(width=FLOAT_WIDTHS[kind], allow_subnormal=True))  # type: ignore[arg-type]
    assert _same(decode(encode(x, kind, order), kind, order), x)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", NUMERIC)
@given(data=st.data())
def test_orders_relate_as_documented(kind: str, order: str, data: st.DataObject) -> None:
    """CDAB reverses the ABCD words, BADC swaps each word's bytes, DCBA does both."""
    words = data.draw(_words(kind))
    if kind == "bool":
        words = [data.draw(st.integers(0, 1))]
    # the exact value (a float loses 64-bit integers past 2**53): struct on big-endian bytes
    x = struct.unpack(">" + _STRUCT[kind], struct.pack(f">{len(words)}H", *words))[0]
    if kind in FLOAT_WIDTHS and math.isnan(x):
        return
    assert _same(decode(words, kind, "ABCD"), float(x))
    swap = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    expected = {"ABCD": words, "CDAB": words[::-1], "BADC": swap, "DCBA": swap[::-1]}[order]
    assert encode(x, kind, order) == expected


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", [*NUMERIC, "bit"])
@given(data=st.data())
def test_decoding_any_words_never_raises(kind: str, order: str, data: st.DataObject) -> None:
    words = data.draw(_words(kind))
    bit = data.draw(st.integers(0, 15)) if kind == "bit" else None
    value = decode(words, kind, order, bit=bit)
    assert isinstance(value, float)
    if kind in INT_RANGES:
        lo, hi = INT_RANGES[kind]
        assert float(lo) <= value <= float(hi) and value == int(value)
        again = encode(value, kind, order)  # a decoded integer always encodes again
        if abs(value) < 2**53:  # exact in a float
            assert again == words
    if kind in ("bool", "bit"):
        assert value in (0.0, 1.0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", list(FLOAT_WIDTHS))
@given(data=st.data())
def test_float_words_round_trip_unless_nan(kind: str, order: str, data: st.DataObject) -> None:
    words = data.draw(_words(kind))
    x = decode(words, kind, order)
    if not math.isnan(x):
        assert encode(x, kind, order) == words


@pytest.mark.parametrize("kind", [*INT_RANGES, *FLOAT_WIDTHS])
@given(data=st.data())
def test_agrees_with_pymodbus_word_orders(kind: str, data: st.DataObject) -> None:
    """pymodbus' word_order big/little is our ABCD/CDAB."""
    words = data.draw(_words(kind))
    for order, word_order in (("ABCD", "big"), ("CDAB", "little")):
        theirs = ModbusTcpClient.convert_from_registers(words, PYMODBUS[kind],
                                                        word_order=word_order)  # type: ignore[arg-type]
        assert isinstance(theirs, int | float)
        assert _same(decode(words, kind, order), float(theirs))


@pytest.mark.parametrize("order", ORDERS)
@given(text=TEXT, spare=st.integers(0, 5))
def test_strings_round_trip(order: str, text: str, spare: int) -> None:
    length = len(text) + spare
    if length == 0:
        return
    words = encode(text, "string", order, length=length)
    assert len(words) == (length + 1) // 2
    assert decode(words, "string", order, length=length) == text
    assert decode(words, "string", order) == text


@pytest.mark.parametrize("order", ORDERS)
@given(words=st.lists(WORD, max_size=20))
def test_decoding_any_string_words_never_raises(order: str, words: list[int]) -> None:
    text = decode(words, "string", order)
    assert isinstance(text, str) and len(text) <= 2 * len(words)


SCALES = st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3)
OFFSETS = st.floats(-1e4, 1e4)


@pytest.mark.parametrize("order", ORDERS)
@given(scale=SCALES, offset=OFFSETS, value=st.floats(-1e9, 1e9))
def test_scale_and_offset_round_trip_float64(order: str, scale: float, offset: float,
                                             value: float) -> None:
    reg = ModbusRegister.model_validate({"table": "holding", "address": 0, "type": "float64",
                                         "order": order, "scale": scale, "offset": offset})
    back = decode_register(encode_register(value, reg), reg)
    assert isinstance(back, float)
    assert math.isclose(back, value, rel_tol=1e-9, abs_tol=1e-9 * (abs(offset) + 1))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["int16", "uint32", "int64"])
@given(data=st.data(), scale=SCALES, offset=OFFSETS)
def test_scale_and_offset_round_trip_integers(order: str, kind: str, data: st.DataObject,
                                              scale: float, offset: float) -> None:
    """Any engineering value a raw integer stands for comes back from its words."""
    lo, hi = INT_RANGES[kind]
    raw = data.draw(st.integers(max(lo, -(2**40)), min(hi, 2**40)))
    reg = ModbusRegister.model_validate({"table": "input", "address": 0, "type": kind,
                                         "order": order, "scale": scale, "offset": offset})
    value = raw * scale + offset
    words = encode_register(value, reg)
    assert decode(words, kind, order) == raw
    back = decode_register(words, reg)
    assert isinstance(back, float)
    assert math.isclose(back, value, rel_tol=1e-9, abs_tol=1e-9 * (abs(offset) + 1))


@pytest.mark.parametrize("order", ORDERS)
@given(current=WORD, bit=st.integers(0, 15), on=st.booleans())
def test_a_bit_write_changes_only_that_bit(order: str, current: int, bit: int, on: bool) -> None:
    reg = ModbusRegister.model_validate({"table": "holding", "address": 0, "type": "bit",
                                         "bit": bit, "order": order})
    words = encode_register(on, reg, current=[current])
    assert decode_register(words, reg) == float(on)
    before = decode([current], "uint16", order)
    after = decode(words, "uint16", order)
    assert int(before) ^ int(after) in (0, 1 << bit)
