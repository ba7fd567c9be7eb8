"""The catalog's Modbus encoding, shared by the connector, the executor and the simulator."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.exceptions import CatalogError
from schemas.modbus import decode, encode, parse_endpoint


def test_32_bit_types_are_high_word_first_big_endian_words() -> None:
    # 1.0f is 0x3F800000 and 160.5f is 0x43208000: the high word comes first
    assert encode(1.0, "float32") == [0x3F80, 0x0000]
    assert encode(160.5, "float32") == [0x4320, 0x8000]
    assert decode([0x4320, 0x8000], "float32") == 160.5
    assert encode(0x12345678, "uint32") == [0x1234, 0x5678]
    assert decode([0x0001, 0x0002], "uint32") == 65538.0


def test_16_bit_types_and_bools() -> None:
    assert encode(-2, "int16") == [0xFFFE] and decode([0xFFFF], "int16") == -1.0
    assert decode([0xFFFF], "uint16") == 65535.0
    assert encode(1.0, "bool") == [1] and decode([7], "bool") == 1.0 and decode([0], "bool") == 0


@given(st.floats(width=32, allow_nan=False))
def test_float32_round_trip(x: float) -> None:
    words = encode(x, "float32")
    assert len(words) == 2 and all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, "float32") == x
    assert struct.pack(">HH", *words) == struct.pack(">f", x)


@given(st.integers(0, 2**32 - 1))
def test_uint32_round_trip(n: int) -> None:
    words = encode(n, "uint32")
    assert words == [n >> 16, n & 0xFFFF]
    assert decode(words, "uint32") == n


@given(st.integers(-(2**15), 2**15 - 1))
def test_int16_round_trip(n: int) -> None:
    assert decode(encode(n, "int16"), "int16") == n


@given(st.integers(0, 0xFFFF))
def test_uint16_round_trip(n: int) -> None:
    assert decode(encode(n, "uint16"), "uint16") == n


def test_float32_nan_decodes_to_nan() -> None:
    assert math.isnan(decode([0x7FC0, 0], "float32"))


@pytest.mark.parametrize(("value", "kind"), [(70000, "uint16"), (-1, "uint16"), (40000, "int16"),
                                             (2**32, "uint32"), (math.nan, "uint16")])
def test_integers_that_do_not_fit_are_refused(value: float, kind: str) -> None:
    with pytest.raises(ValueError, match=kind):
        encode(value, kind)


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="float64"):
        encode(1.0, "float64")
    with pytest.raises(ValueError, match="float64"):
        decode([0], "float64")


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1:5020") == ("127.0.0.1", 5020)
    assert parse_endpoint("modbus://plc.local:502/") == ("plc.local", 502)
    assert parse_endpoint("plc.local") == ("plc.local", 502)
    with pytest.raises(CatalogError, match="host:port"):
        parse_endpoint("plc:notaport")
