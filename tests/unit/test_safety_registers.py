"""Setpoint values as Modbus registers: the byte order the executor writes to a press."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.devices import decode_registers, encode_registers
from sinks.executor import matches


def test_float32_is_high_word_first_big_endian_words() -> None:
    # 160.5 = 0x43208000: high word 0x4320, low word 0x8000
    assert encode_registers(160.5, "float32") == [0x4320, 0x8000]
    assert decode_registers([0x4320, 0x8000], "float32") == 160.5


def test_int16_is_twos_complement() -> None:
    assert encode_registers(-2, "int16") == [0xFFFE]
    assert decode_registers([0xFFFE], "int16") == -2.0


def test_uint32_is_high_word_first() -> None:
    assert encode_registers(0x12345678, "uint32") == [0x1234, 0x5678]


@pytest.mark.parametrize(("value", "kind"), [(70000, "uint16"), (-1, "uint16"), (40000, "int16")])
def test_out_of_range_integers_are_refused(value: float, kind: str) -> None:
    with pytest.raises(ValueError, match=kind):
        encode_registers(value, kind)


def test_bool_registers_cannot_hold_a_setpoint() -> None:
    with pytest.raises(ValueError, match="bool"):
        encode_registers(1.0, "bool")


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(value: float) -> None:
    words = encode_registers(value, "float32")
    assert all(0 <= w <= 0xFFFF for w in words) and len(words) == 2
    assert decode_registers(words, "float32") == value
    assert struct.pack(">HH", *words) == struct.pack(">f", value)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_float32_precision_is_within_the_readback_tolerance(value: float) -> None:
    assert matches(value, decode_registers(encode_registers(value, "float32"), "float32"))


@given(st.integers(min_value=-0x8000, max_value=0x7FFF))
def test_int16_round_trip(value: int) -> None:
    assert decode_registers(encode_registers(value, "int16"), "int16") == value


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_uint16_round_trip(value: int) -> None:
    assert decode_registers(encode_registers(value, "uint16"), "uint16") == value


def test_readback_tolerance() -> None:
    assert matches(8000.0, 8007.9) and not matches(8000.0, 8008.1)
    assert matches(0.0, 0.001) and not matches(0.0, 0.0011)
    assert not matches(5.0, math.inf)
