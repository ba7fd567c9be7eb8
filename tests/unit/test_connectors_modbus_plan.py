"""Read planning per unit and size limits, block bisection, decoding of bad values, and the
backoff: the Modbus connector's pure parts, no network."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.modbus_device import Backoff
from connectors.modbus_map import (
    ReadBlock,
    TagValue,
    decode_block,
    machine_plans,
    plan_reads,
    split_block,
)
from schemas.catalog import ModbusRegister, load_catalog
from schemas.modbus import encode


def reg(address: int, type_: str = "float32", table: str = "holding", **kw: object
        ) -> ModbusRegister:
    return ModbusRegister(table=table, address=address, type=type_, **kw)  # type: ignore[arg-type]


def test_registers_of_other_units_are_read_separately() -> None:
    tags = [("a", reg(0)), ("b", reg(2, unit_id=2)), ("c", reg(4))]
    blocks = plan_reads(tags, unit_id=1)
    assert [(b.unit, b.address, b.count, b.tags) for b in blocks] == [
        (1, 0, 6, ["a", "c"]), (2, 2, 2, ["b"])]


def test_max_block_and_max_bits_cap_each_read() -> None:
    tags = [(f"t{i}", reg(2 * i)) for i in range(20)]
    blocks = plan_reads(tags, max_block=16)
    assert [b.count for b in blocks] == [16, 16, 8]
    bits = [(f"b{i}", reg(i, "bool", "coil")) for i in range(50)]
    assert [b.count for b in plan_reads(bits, max_bits=20)] == [20, 20, 10]


def test_a_value_wider_than_max_block_is_read_alone() -> None:
    tags = [("s", reg(0, "string", length=40)), ("x", reg(20))]
    blocks = plan_reads(tags, max_block=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 20), (20, 2)]


@given(st.lists(st.integers(0, 300), min_size=2, max_size=40, unique=True))
def test_bisection_keeps_every_tag_once_and_covers_it(addresses: list[int]) -> None:
    tags = [(f"t{a}", reg(2 * a)) for a in addresses]
    block = ReadBlock("holding", 0, 0, tuple(sorted(tags, key=lambda t: t[1].address)), 3)
    halves = split_block(block)
    assert halves is not None
    assert [t for h in halves for t in h.tags] == block.tags
    for h in halves:
        assert h.unit == 3 and len(h.items) >= 1
        assert all(h.address <= r.address and r.end <= h.address + h.count for _, r in h.items)
    assert split_block(halves[0]) is None or len(halves[0].items) > 1


def test_a_single_tag_cannot_be_split() -> None:
    assert split_block(ReadBlock("input", 4, 2, (("x", reg(4, table="input")),))) is None


def test_decode_gives_text_scaled_numbers_and_bad_for_inf_nan() -> None:
    items = (
        ("f", reg(0, order="CDAB")),
        ("inf", reg(2)),
        ("nan", reg(4)),
        ("s", reg(6, "string", length=4)),
        ("v", reg(8, "uint16", scale=0.5, offset=-40)),
        ("bit", reg(9, "bit", bit=2)),
    )
    block = ReadBlock("holding", 0, 10, items, 1)
    data = [*encode(2.5, "float32", "CDAB"), *encode(math.inf, "float32"),
            *encode(math.nan, "float32"), *encode("AB", "string", length=4), 300, 0b100]
    out = {v.path: v for v in decode_block(block, data)}
    assert out["f"] == TagValue("f", 2.5)
    assert out["s"] == TagValue("s", text="AB")
    assert out["v"] == TagValue("v", 110.0)
    assert out["bit"] == TagValue("bit", 1.0)
    for name, word in (("inf", "inf"), ("nan", "nan")):
        assert not out[name].good and out[name].value is None
        assert f"holding register {2 if name == 'inf' else 4}, unit 1 holds {word}" in str(
            out[name].status)
    with pytest.raises(ValueError, match="expected 10"):
        decode_block(block, data[:9])


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(start=0.5, cap=4.0)
    assert [b.failed(100.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.waiting(103.9) and not b.waiting(104.0)
    b.succeeded()
    assert not b.waiting(100.0) and b.failed(0.0) == 0.5


def test_machine_plans_take_the_machines_endpoint_rate_and_block_size(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent("""\
        enterprise: e
        site: s
        sources:
          - {name: plc, protocol: modbus, endpoint: "10.0.0.1:502", interval_ms: 500,
             max_block: 60, max_gap: 0}
        machines:
          - {name: m1, area: a, line: l, source: plc, tags: [
              {name: x, register: {table: input, address: 0}},
              {name: y, register: {table: input, address: 3}}]}
          - {name: m2, area: a, line: l, source: plc, endpoint: "10.0.0.2:502", unit_id: 4,
             poll_ms: 50, max_block: 2, tags: [
              {name: x, register: {table: input, address: 0}},
              {name: y, register: {table: input, address: 2}}]}
        """))
    catalog = load_catalog(path)
    m1, m2 = machine_plans(catalog, "plc", endpoint="127.0.0.1:5020")
    assert (m1.endpoint, m1.unit_id, m1.poll_ms, len(m1.blocks)) == ("127.0.0.1:5020", 1, 500, 2)
    assert (m2.endpoint, m2.unit_id, m2.poll_ms) == ("10.0.0.2:502", 4, 50)
    assert [(b.unit, b.count) for b in m2.blocks] == [(4, 2), (4, 2)]
