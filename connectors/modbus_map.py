"""Modbus register maps as plain data: which blocks to read and how to decode them.

Pure functions, no network: :func:`machine_plans` turns the catalog's Modbus machines into
what each poll reads; :func:`plan_reads` groups a machine's tags into contiguous blocks per
unit id and table (one request per block, not one per register); :func:`split_block` halves
a block whose read a device refuses, to isolate the bad register; :func:`decode_block` turns
a block's registers or bits into one :class:`TagValue` per tag with the catalog's codec
(:func:`schemas.modbus.decode_register`: type, byte/word order, scale and offset).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.catalog import Catalog, ModbusRegister
from schemas.modbus import BIT_TABLES, decode_register
from schemas.modbus_wire import span_text

__all__ = [
    "DEFAULT_MAX_GAP",
    "MAX_BITS",
    "MAX_REGISTERS",
    "MachinePlan",
    "ReadBlock",
    "TagValue",
    "bad_values",
    "decode_block",
    "machine_plans",
    "plan_reads",
    "split_block",
]

MAX_REGISTERS = 125  # the protocol's limit for one read of holding/input registers
MAX_BITS = 2000  # the protocol's limit for one read of coils/discrete inputs
DEFAULT_MAX_GAP = 4  # unused registers a block may span to save a request

Item = tuple[str, ModbusRegister]


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address`` at
    unit ``unit``. ``items`` are the tags it carries as (tag path, register), by address."""

    table: str
    address: int
    count: int
    items: tuple[Item, ...]
    unit: int = 1

    @property
    def tags(self) -> list[str]:
        return [path for path, _ in self.items]

    def describe(self) -> str:
        """``holding registers 100..103, unit 3``."""
        return span_text(self.table, self.address, self.count, self.unit)


@dataclass(frozen=True, slots=True)
class TagValue:
    """One tag's outcome of a read: a number, a text, or why there is neither (BAD)."""

    path: str
    value: float | None = None
    text: str | None = None
    status: str | None = None

    @property
    def good(self) -> bool:
        return self.status is None


@dataclass(frozen=True, slots=True)
class MachinePlan:
    """The reads one poll of one machine makes, where, and how often."""

    machine: str
    endpoint: str
    unit_id: int
    poll_ms: int
    blocks: tuple[ReadBlock, ...]


def machine_plans(catalog: Catalog, source: str, *, endpoint: str | None = None
                  ) -> list[MachinePlan]:
    """One plan per Modbus machine of ``source`` that has registers. A machine's own
    ``endpoint`` wins; ``endpoint`` overrides the source's for the others."""
    spec = catalog.source(source)
    plans = []
    for m in catalog.machines_of(source):
        regs = [(catalog.tag_path(m, t), t.modbus) for t in m.tags if t.modbus is not None]
        if not regs:
            continue
        blocks = plan_reads(regs, unit_id=m.unit_id, max_gap=spec.max_gap,
                            max_block=m.max_block or spec.max_block, max_bits=spec.max_bits)
        plans.append(MachinePlan(
            m.name, m.endpoint or endpoint or spec.endpoint, m.unit_id,
            m.poll_ms or spec.interval_ms, tuple(blocks)))
    return plans


def plan_reads(registers: Iterable[Item], *, unit_id: int = 1,
               max_gap: int = DEFAULT_MAX_GAP, max_block: int = MAX_REGISTERS,
               max_bits: int = MAX_BITS) -> list[ReadBlock]:
    """Group tags into as few reads as the gap and size limits allow, per unit and table.

    Two tags share a read when at most ``max_gap`` unused addresses lie between them and
    the read stays within ``max_block`` registers (``max_bits`` bits). A register's own
    ``unit_id`` overrides ``unit_id``. A value wider than ``max_block`` is read on its own.
    """
    groups: dict[tuple[int, str], list[Item]] = {}
    for path, reg in registers:
        unit = unit_id if reg.unit_id is None else reg.unit_id
        groups.setdefault((unit, reg.table), []).append((path, reg))
    blocks: list[ReadBlock] = []
    for (unit, table), found in sorted(groups.items()):
        limit = min(max_bits, MAX_BITS) if table in BIT_TABLES else min(max_block, MAX_REGISTERS)
        items = sorted(found, key=lambda item: (item[1].address, item[0]))
        group = [items[0]]
        start, end = items[0][1].address, _end(items[0][1])
        for item in items[1:]:
            reg = item[1]
            if reg.address - end <= max_gap and max(end, _end(reg)) - start <= limit:
                group.append(item)
                end = max(end, _end(reg))
                continue
            blocks.append(ReadBlock(table, start, end - start, tuple(group), unit))
            start, end, group = reg.address, _end(reg), [item]
        blocks.append(ReadBlock(table, start, end - start, tuple(group), unit))
    return blocks


def split_block(block: ReadBlock) -> tuple[ReadBlock, ReadBlock] | None:
    """The block's tags in two reads (first half, second half), or None for a single tag.

    Bisecting a refused read isolates the register a device rejects in log2(n) steps while
    the rest of the block keeps flowing.
    """
    if len(block.items) < 2:
        return None
    half = len(block.items) // 2
    return _block_of(block, block.items[:half]), _block_of(block, block.items[half:])


def _block_of(block: ReadBlock, items: tuple[Item, ...]) -> ReadBlock:
    start = min(reg.address for _, reg in items)
    end = max(_end(reg) for _, reg in items)
    return ReadBlock(block.table, start, end - start, items, block.unit)


def _end(reg: ModbusRegister) -> int:
    """One past the last address the register occupies."""
    return reg.address + (1 if reg.table in BIT_TABLES else reg.width)


def bad_values(block: ReadBlock, status: str) -> list[TagValue]:
    """Every tag of ``block`` as BAD with ``status`` as the reason."""
    return [TagValue(path, status=status) for path in block.tags]


def decode_block(block: ReadBlock, data: Sequence[int] | Sequence[bool]) -> list[TagValue]:
    """Each tag's value from what the device returned for the block.

    ``data`` is the register words (or bits) from ``block.address`` on; it may be longer
    than ``block.count`` (devices pad bits to whole bytes), never shorter (ValueError). A
    value that is Inf or NaN, or does not decode, is BAD with the reason.
    """
    if len(data) < block.count:
        raise ValueError(f"reading {block.describe()}: got {len(data)} values, "
                         f"expected {block.count}")
    out: list[TagValue] = []
    for path, reg in block.items:
        offset = reg.address - block.address
        if reg.table in BIT_TABLES:
            out.append(TagValue(path, 1.0 if data[offset] else 0.0))
            continue
        words = [int(w) for w in data[offset : offset + reg.width]]
        out.append(_decode_one(path, reg, words, block.unit))
    return out


def _decode_one(path: str, reg: ModbusRegister, words: list[int], unit: int) -> TagValue:
    where = f"{reg.table} register {reg.address}, unit {unit}"
    try:
        value = decode_register(words, reg)
    except ValueError as exc:
        return TagValue(path, status=f"cannot decode {where}: {exc}")
    if isinstance(value, str):
        return TagValue(path, text=value)
    if not math.isfinite(value):
        raw = " ".join(f"0x{w:04X}" for w in words)
        return TagValue(path, status=f"{where} holds {value} as {reg.type} {reg.order} "
                        f"(raw {raw}); not a measurement: check the type and order")
    return TagValue(path, value)
