"""``millstream probe``'s table: every type in every order, without a device."""

from __future__ import annotations

import struct

from millstream.commands.probe import PROBE_TYPES, decode_all, render


def test_each_order_decodes_its_own_layout() -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">f", 123.456))
    cells = decode_all([lo, hi, 0, 0])  # float32 in CDAB (word swap)
    assert cells["float32"]["CDAB"] == "123.456"
    assert cells["float32"]["ABCD"] != "123.456"
    assert cells["uint16"]["ABCD"] == str(lo) and cells["uint16"]["BADC"] == str(
        struct.unpack("<H", struct.pack(">H", lo))[0])


def test_64_bit_integers_are_exact_and_short_reads_say_what_they_need() -> None:
    value = 2**63 - 3  # no float holds it
    words = list(struct.unpack(">4H", struct.pack(">q", value)))
    assert decode_all(words)["int64"]["ABCD"] == str(value)
    assert decode_all(words[:2])["float64"]["ABCD"] == "(needs 4)"


def test_render_shows_raw_words_and_a_row_per_type() -> None:
    out = render([0x4D49, 0x5800], endpoint="plc:502", table="input", address=7, unit=3)
    assert "input registers 7..8, unit 3" in out
    assert "7=0x4D49  8=0x5800" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert set(PROBE_TYPES) <= set(rows)
    assert "'MIX'" in rows["string"]
