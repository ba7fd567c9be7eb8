"""Modbus register maps as plain data: which blocks to read and how to decode them.

Pure functions, no network: :func:`plan_reads` groups a machine's tags into contiguous
blocks (one request per block, not one per register), :func:`decode_block` turns a block's
registers or bits back into values with the catalog's encoding (:mod:`schemas.modbus`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.catalog import ModbusRegister
from schemas.modbus import BIT_TABLES, decode

__all__ = [
    "MAX_BITS",
    "MAX_REGISTERS",
    "ReadBlock",
    "decode_block",
    "plan_reads",
]

MAX_REGISTERS = 125  # the protocol's limit for one read of holding/input registers
MAX_BITS = 2000  # the protocol's limit for one read of coils/discrete inputs
DEFAULT_MAX_GAP = 4  # unused registers a block may span to save a request


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``.

    ``items`` are the tags it carries as (tag path, register), in address order.
    """

    table: str
    address: int
    count: int
    items: tuple[tuple[str, ModbusRegister], ...]

    @property
    def tags(self) -> list[str]:
        return [path for path, _ in self.items]


def plan_reads(
    registers: Iterable[tuple[str, ModbusRegister]], *, max_gap: int = DEFAULT_MAX_GAP
) -> list[ReadBlock]:
    """Group tags into as few reads as the gap and size limits allow, per table.

    Two tags share a read when at most ``max_gap`` unused addresses lie between them and
    the read stays within the protocol's size limit.
    """
    by_table: dict[str, list[tuple[str, ModbusRegister]]] = {}
    for path, reg in registers:
        by_table.setdefault(reg.table, []).append((path, reg))
    blocks: list[ReadBlock] = []
    for table in sorted(by_table):
        limit = MAX_BITS if table in BIT_TABLES else MAX_REGISTERS
        items = sorted(by_table[table], key=lambda item: (item[1].address, item[0]))
        start, end = items[0][1].address, _end(items[0][1])
        group = [items[0]]
        for item in items[1:]:
            reg = item[1]
            if reg.address - end <= max_gap and max(end, _end(reg)) - start <= limit:
                group.append(item)
                end = max(end, _end(reg))
                continue
            blocks.append(ReadBlock(table, start, end - start, tuple(group)))
            start, end, group = reg.address, _end(reg), [item]
        blocks.append(ReadBlock(table, start, end - start, tuple(group)))
    return blocks


def _end(reg: ModbusRegister) -> int:
    """One past the last address the register occupies."""
    return reg.address + (1 if reg.table in BIT_TABLES else reg.width)


def decode_block(block: ReadBlock, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, float]]:
    """Values of the block's tags from what the device returned for the block.

    ``data`` is the register words (or bits) from ``block.address`` on; devices pad bit
    reads to whole bytes, so it may be longer than ``block.count``, never shorter.
    """
    if len(data) < block.count:
        raise ValueError(
            f"{block.table} read at {block.address} returned {len(data)} values, "
            f"expected {block.count}"
        )
    out: list[tuple[str, float]] = []
    for path, reg in block.items:
        offset = reg.address - block.address
        if reg.table in BIT_TABLES:
            out.append((path, 1.0 if data[offset] else 0.0))
        else:
            out.append((path, decode(data[offset : offset + reg.width], reg.type)))
    return out
