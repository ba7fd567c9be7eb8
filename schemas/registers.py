"""A Modbus register map entry: where a tag's value lives on a device and how it is encoded.

``table`` and ``address`` (0-based protocol address) say where; ``type`` and ``order`` say
how the bytes are laid out (:mod:`schemas.modbus` is the codec); ``scale`` and ``offset``
turn the raw number into engineering units: ``value = raw * scale + offset``. ``unit_id``
overrides the machine's unit id for this one register.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BIT_TABLES", "NUMERIC_TYPES", "ORDERS", "REGISTER_TYPES", "ModbusRegister", "Order"]

BIT_TABLES = frozenset({"coil", "discrete"})
Order = Literal["ABCD", "BADC", "CDAB", "DCBA"]
ORDERS: tuple[str, ...] = ("ABCD", "BADC", "CDAB", "DCBA")
# register words each type occupies (string: per its length; bit: one register)
NUMERIC_TYPES: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
    "float32": 2, "float64": 4,
}
REGISTER_TYPES = (*NUMERIC_TYPES, "bool", "bit", "string")
_STRING = re.compile(r"^string\((\d+)\)$")
_BIT = re.compile(r"^bit\((\d+)\)$")


class ModbusRegister(BaseModel):
    """Where a tag lives on a Modbus device (YAML key ``register``, or a CSV row).

    ``bool`` is a coil/discrete bit, or a whole register read as 0/1 (as many PLC maps do);
    ``bit`` is bit ``bit`` (0 = least significant) of a register; ``string`` holds
    ``length`` bytes, two per register (``string(n)`` is shorthand).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: Literal["input", "holding", "coil", "discrete"]
    address: int = Field(ge=0, le=65535)
    type: Literal[
        "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
        "bool", "bit", "string",
    ] = "float32"
    order: Order = "ABCD"
    bit: int | None = Field(default=None, ge=0, le=15)
    length: int | None = Field(default=None, ge=1, le=250)  # string: bytes
    scale: float = 1.0
    offset: float = 0.0
    unit_id: int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``string(20)`` -> type string, length 20; ``bit(3)`` -> type bit, bit 3."""
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            text = data["type"].strip().lower()
            if m := _STRING.match(text):
                data = {**data, "type": "string", "length": int(m.group(1))}
            elif m := _BIT.match(text):
                data = {**data, "type": "bit", "bit": int(m.group(1))}
            else:
                data = {**data, "type": text}
        if isinstance(data, dict) and isinstance(data.get("order"), str):
            data = {**data, "order": data["order"].strip().upper()}
        return data

    @property
    def width(self) -> int:
        """How many registers (or bits, in a bit table) the value occupies."""
        if self.type == "string":
            return ((self.length or 0) + 1) // 2
        return NUMERIC_TYPES.get(self.type, 1)

    @property
    def numeric(self) -> bool:
        return self.type != "string"

    @property
    def end(self) -> int:
        """One past the last address the value occupies."""
        return self.address + self.width

    @model_validator(mode="after")
    def _fits(self) -> ModbusRegister:
        if self.table in BIT_TABLES and self.type != "bool":
            raise ValueError(
                f"{self.table} tables hold single bits: use type bool, not {self.type!r}")
        if self.type == "bit" and self.bit is None:
            raise ValueError("type bit needs 'bit' (0 = least significant bit), or write bit(N)")
        if self.type != "bit" and self.bit is not None:
            raise ValueError(f"'bit' only applies to type bit, not {self.type!r}")
        if self.type == "string" and self.length is None:
            raise ValueError("type string needs 'length' in bytes, or write string(N)")
        if self.type != "string" and self.length is not None:
            raise ValueError(f"'length' only applies to type string, not {self.type!r}")
        if self.scale == 0:
            raise ValueError("scale 0 would make every value equal the offset; use 1 for none")
        if self.end - 1 > 65535:
            raise ValueError(
                f"a {self.type} at address {self.address} runs past address 65535")
        return self

    def to_engineering(self, raw: float) -> float:
        return raw * self.scale + self.offset

    def to_raw(self, value: float) -> float:
        return (value - self.offset) / self.scale
