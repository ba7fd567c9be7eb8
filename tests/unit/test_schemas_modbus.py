"""The catalog's Modbus codec: known vectors per type and order, and its refusals."""

from __future__ import annotations

import math
import struct

import pytest

from schemas.exceptions import CatalogError
from schemas.modbus import decode, decode_register, encode, encode_register, parse_endpoint
from schemas.registers import ModbusRegister

# (type, value, order -> wire words); 123.456 is 0x42F6E979 as float32 and
# 0x405EDD2F1A9FBE77 as float64
VECTORS = [
    ("float32", 123.456, {"ABCD": [0x42F6, 0xE979], "CDAB": [0xE979, 0x42F6],
                          "BADC": [0xF642, 0x79E9], "DCBA": [0x79E9, 0xF642]}),
    ("float64", 123.456, {"ABCD": [0x405E, 0xDD2F, 0x1A9F, 0xBE77],
                          "CDAB": [0xBE77, 0x1A9F, 0xDD2F, 0x405E],
                          "BADC": [0x5E40, 0x2FDD, 0x9F1A, 0x77BE],
                          "DCBA": [0x77BE, 0x9F1A, 0x2FDD, 0x5E40]}),
    ("uint32", 0x12345678, {"ABCD": [0x1234, 0x5678], "CDAB": [0x5678, 0x1234],
                            "BADC": [0x3412, 0x7856], "DCBA": [0x7856, 0x3412]}),
    ("int32", -2, {"ABCD": [0xFFFF, 0xFFFE], "CDAB": [0xFFFE, 0xFFFF],
                   "BADC": [0xFFFF, 0xFEFF], "DCBA": [0xFEFF, 0xFFFF]}),
    ("int64", 0x0102030405060708, {"ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
                                   "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
                                   "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
                                   "DCBA": [0x0807, 0x0605, 0x0403, 0x0201]}),
    ("uint16", 0x1234, {"ABCD": [0x1234], "CDAB": [0x1234], "BADC": [0x3412], "DCBA": [0x3412]}),
    ("int16", -2, {"ABCD": [0xFFFE], "CDAB": [0xFFFE], "BADC": [0xFEFF], "DCBA": [0xFEFF]}),
]


@pytest.mark.parametrize(("kind", "value", "by_order"), VECTORS, ids=[v[0] for v in VECTORS])
def test_known_vectors_in_every_order(kind: str, value: float, by_order: dict[str, list[int]]
                                      ) -> None:
    for order, words in by_order.items():
        assert encode(value, kind, order) == words, order
        assert decode(words, kind, order) == pytest.approx(value, rel=1e-7), order


def test_default_order_is_high_word_first_big_endian() -> None:
    # 1.0f is 0x3F800000 and 160.5f is 0x43208000: the high word comes first
    assert encode(1.0, "float32") == [0x3F80, 0x0000]
    assert encode(160.5, "float32") == [0x4320, 0x8000]
    assert decode([0x4320, 0x8000], "float32") == 160.5
    assert decode([0x0001, 0x0002], "uint32") == 65538.0
    assert encode(-2, "int16") == [0xFFFE] and decode([0xFFFF], "int16") == -1.0
    assert decode([0xFFFF], "uint16") == 65535.0


def test_64_bit_extremes_encode_from_their_nearest_floats() -> None:
    # 2**64 - 1 has no float: decoding gives 2**64.0, which must encode back to all ones
    top = decode([0xFFFF] * 4, "uint64")
    assert top == 2.0**64 and encode(top, "uint64") == [0xFFFF] * 4
    assert encode(2**63 - 1, "int64") == [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]
    assert encode(float(2**63 - 1), "int64") == [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]
    with pytest.raises(ValueError, match="uint64"):
        encode(2.0**64 + 2**12, "uint64")


def test_bools_and_bits() -> None:
    assert encode(1.0, "bool") == [1] and encode(0, "bool") == [0]
    assert decode([7], "bool") == 1.0 and decode([0], "bool") == 0
    assert decode([0b1000], "bit", bit=3) == 1.0 and decode([0b1000], "bit", bit=2) == 0.0
    # BADC: the word's bytes are swapped, so bit 8 of the value is bit 0 on the wire
    assert decode([0x0001], "bit", "BADC", bit=8) == 1.0


def test_strings_in_every_order() -> None:
    assert encode("ABCD", "string") == [0x4142, 0x4344]
    assert encode("ABCD", "string", "BADC") == [0x4241, 0x4443]
    assert encode("ABCD", "string", "CDAB") == [0x4344, 0x4142]
    assert encode("ABCD", "string", "DCBA") == [0x4443, 0x4241]
    assert encode("ABC", "string", length=6) == [0x4142, 0x4300, 0x0000]
    assert decode([0x4142, 0x4320, 0x0000], "string") == "ABC"
    assert decode([0x4142, 0x4344], "string", length=3) == "ABC"


def test_odd_string_bytes_decode_without_raising() -> None:
    text = decode([0x41FF, 0x0142], "string")
    assert text == "A\u00ff\ufffdB"


def test_non_finite_floats_decode_as_such() -> None:
    assert math.isnan(decode([0x7FC0, 0], "float32"))
    assert decode([0x7F80, 0], "float32") == math.inf
    assert decode([0, 0, 0, 0xFFF0], "float64", "CDAB") == -math.inf
    assert encode(math.inf, "float32") == [0x7F80, 0]


@pytest.mark.parametrize(("value", "kind"), [
    (70000, "uint16"), (-1, "uint16"), (40000, "int16"), (2**32, "uint32"), (-(2**31) - 1, "int32"),
    (2**64, "uint64"), (2**63, "int64"), (math.nan, "uint16"), (math.inf, "int64"),
    (1e39, "float32"), (2**1100, "float64"), (10**400, "int64"), (-(10**400), "uint16"),
])
def test_numbers_that_do_not_fit_are_refused_with_the_range(value: float, kind: str) -> None:
    with pytest.raises(ValueError, match=rf"{kind} register \(range -?[0-9.e+]+\.\.") as err:
        encode(value, kind)
    assert repr(value)[:10] in str(err.value)


@pytest.mark.parametrize(("words", "kind", "match"), [
    ([1], "float32", "float32 needs 2 register"), ([1, 2, 3], "uint32", "needs 2"),
    ([1, 2], "int16", "int16 needs 1"), ([1, 2], "float64", "float64 needs 4"),
    ([0x10000, 0], "uint32", "outside 0..65535"), ([-1], "int16", "outside"),
    ([1.5], "uint16", "not an integer"),
])
def test_responses_of_the_wrong_shape_are_refused(words: list[int], kind: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode(words, kind)


def test_string_length_mismatch_and_bad_text_are_refused() -> None:
    with pytest.raises(ValueError, match="needs 2 register"):
        decode([0x4142], "string", length=4)
    with pytest.raises(ValueError, match="longer than the string's 3"):
        encode("ABCD", "string", length=3)
    with pytest.raises(ValueError, match="not Latin-1"):
        encode("\u20ac", "string")
    with pytest.raises(ValueError, match="is not text"):
        encode(1.0, "string")
    with pytest.raises(ValueError, match="is text"):
        encode("1", "uint16")


def test_unknown_types_orders_and_misplaced_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="float16"):
        encode(1.0, "float16")
    with pytest.raises(ValueError, match="float16"):
        decode([0], "float16")
    with pytest.raises(ValueError, match=r"'ABDC'.*ABCD, BADC, CDAB, DCBA"):
        decode([0, 0], "float32", "ABDC")
    with pytest.raises(ValueError, match="type bit needs bit"):
        decode([1], "bit")
    with pytest.raises(ValueError, match="only applies to type bit"):
        decode([1], "uint16", bit=1)
    with pytest.raises(ValueError, match="read-modify-write"):
        encode(1, "bit")


def test_registers_apply_scale_and_offset() -> None:
    reg = ModbusRegister(table="holding", address=0, type="int16", scale=0.1, offset=-40)
    assert decode_register([400], reg) == pytest.approx(0.0)
    assert encode_register(25.0, reg) == [650]
    swapped = ModbusRegister(table="input", address=0, type="float32", order="CDAB", scale=2)
    assert decode_register([0xE979, 0x42F6], swapped) == pytest.approx(2 * 123.456, rel=1e-7)
    text = ModbusRegister.model_validate({"table": "holding", "address": 0, "type": "string(5)"})
    assert encode_register("HELLO", text) == [0x4845, 0x4C4C, 0x4F00]
    assert decode_register([0x4845, 0x4C4C, 0x4F00], text) == "HELLO"
    with pytest.raises(ValueError, match="needs 3 register"):
        decode_register([0x4845, 0x4C4C], text)


def test_writing_a_bit_is_a_read_modify_write() -> None:
    reg = ModbusRegister.model_validate({"table": "holding", "address": 7, "type": "bit(3)"})
    assert decode_register([0x0008], reg) == 1.0
    assert encode_register(1, reg, current=[0x00F0]) == [0x00F8]
    assert encode_register(0, reg, current=0x00F8) == [0x00F0]
    swapped = reg.model_copy(update={"order": "BADC"})
    assert encode_register(True, swapped, current=[0xF000]) == [0xF800]
    with pytest.raises(ValueError, match="bit 3 of holding register 7 is a read-modify-write"):
        encode_register(1, reg)


def test_the_wire_bytes_are_the_ieee_bytes() -> None:
    # on the wire each word goes high byte first: ABCD is big-endian, DCBA little-endian
    assert struct.pack(">HH", *encode(0.1, "float32")) == struct.pack(">f", 0.1)
    assert struct.pack(">HH", *encode(0.1, "float32", "DCBA")) == struct.pack("<f", 0.1)
    assert struct.pack(">4H", *encode(-0.1, "float64", "DCBA")) == struct.pack("<d", -0.1)


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1:5020") == ("127.0.0.1", 5020)
    assert parse_endpoint("modbus://plc.local:502/") == ("plc.local", 502)
    assert parse_endpoint("plc.local") == ("plc.local", 502)
    with pytest.raises(CatalogError, match="host:port"):
        parse_endpoint("plc:notaport")
