"""Register grouping and decoding for the Modbus source: pure functions, no network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.modbus_map import (
    MAX_REGISTERS,
    ReadBlock,
    TagValue,
    decode_block,
    machine_plans,
    plan_reads,
)
from schemas.catalog import Catalog, ModbusRegister
from schemas.modbus import encode


def reg(table: str, address: int, type_: str = "float32") -> ModbusRegister:
    return ModbusRegister(table=table, address=address, type=type_)  # type: ignore[arg-type]


def test_contiguous_registers_are_one_read() -> None:
    tags = [(f"t{i}", reg("input", 2 * i)) for i in range(7)]
    blocks = plan_reads(tags)
    assert blocks == [ReadBlock("input", 0, 14, tuple(tags))]


def test_small_gaps_join_and_large_gaps_split() -> None:
    tags = [("a", reg("input", 0)), ("b", reg("input", 5)), ("c", reg("input", 40))]
    blocks = plan_reads(tags, max_gap=3)
    assert [(b.address, b.count, b.tags) for b in blocks] == [(0, 7, ["a", "b"]), (40, 2, ["c"])]
    assert len(plan_reads(tags, max_gap=0)) == 3


def test_tables_are_read_separately_and_bits_are_one_wide() -> None:
    tags = [
        ("run", reg("discrete", 0, "bool")),
        ("fault", reg("discrete", 1, "bool")),
        ("sp", reg("holding", 0)),
        ("p", reg("input", 0)),
        ("count", reg("input", 2, "uint32")),
    ]
    blocks = {b.table: b for b in plan_reads(tags)}
    assert set(blocks) == {"discrete", "holding", "input"}
    assert (blocks["discrete"].address, blocks["discrete"].count) == (0, 2)
    assert (blocks["input"].address, blocks["input"].count) == (0, 4)
    assert blocks["holding"].count == 2


def test_a_read_never_exceeds_the_protocol_limit() -> None:
    tags = [(f"t{i}", reg("holding", 2 * i)) for i in range(200)]
    blocks = plan_reads(tags)
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    assert sorted(t for b in blocks for t in b.tags) == sorted(t for t, _ in tags)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["input", "holding", "coil", "discrete"]),
            st.integers(0, 600),
            st.sampled_from(["float32", "uint16", "int16", "uint32"]),
        ),
        min_size=1,
        max_size=60,
        unique_by=lambda x: (x[0], x[1]),
    ),
    st.integers(0, 8),
)
def test_plan_covers_every_tag_once_within_limits(
    specs: list[tuple[str, int, str]], max_gap: int
) -> None:
    tags = [(f"t{i}", reg(tb, a, "bool" if tb in ("coil", "discrete") else ty))
            for i, (tb, a, ty) in enumerate(specs)]
    blocks = plan_reads(tags, max_gap=max_gap)
    seen = [t for b in blocks for t in b.tags]
    assert sorted(seen) == sorted(t for t, _ in tags)
    for b in blocks:
        limit = 2000 if b.table in ("coil", "discrete") else MAX_REGISTERS
        assert 0 < b.count <= limit
        for _, r in b.items:
            assert r.table == b.table
            width = 1 if b.table in ("coil", "discrete") else r.width
            assert b.address <= r.address and r.address + width <= b.address + b.count



def test_decode_block_uses_offsets_and_padded_bits() -> None:
    items = (("p", reg("input", 10)), ("n", reg("input", 14, "uint32")))
    block = ReadBlock("input", 10, 6, items)
    words = [*encode(2.5, "float32"), 0, 0, *encode(70000, "uint32")]
    assert decode_block(block, words) == [TagValue("p", 2.5), TagValue("n", 70000.0)]
    bits_block = ReadBlock("coil", 3, 2, (("a", reg("coil", 3, "bool")),
                                          ("b", reg("coil", 4, "bool"))))
    assert decode_block(bits_block, [False, True] + [False] * 6) == [
        TagValue("a", 0.0), TagValue("b", 1.0)]
    with pytest.raises(ValueError, match="expected 6"):
        decode_block(block, words[:4])


def test_catalog_press_is_three_reads(catalog: Catalog) -> None:
    (plan,) = machine_plans(catalog, "modbus-sim")
    assert plan.machine == "press-01" and plan.unit_id == 1
    assert sorted((b.table, b.address, b.count) for b in plan.blocks) == [
        ("discrete", 0, 2), ("holding", 0, 2), ("input", 0, 16)]
    assert sum(len(b.items) for b in plan.blocks) == 11
