"""Vendor register maps in CSV: one row per tag, read into the catalog's tag entries.

Vendors publish Modbus maps as spreadsheets with their own column names, so the header
is matched loosely (case, spaces and punctuation ignored; common synonyms accepted):

===========  =====================================================================
column       synonyms and values
===========  =====================================================================
name         tag, tag name, point, signal (required; slugified to a_z_0_9)
address      register, addr, offset address (required; 0-based, or Modicon 40001)
table        area, register type, object type, fc: holding/hr/4x/fc3, input/ir/3x/
             fc4, coil/co/0x/fc1, discrete/di/1x/fc2; absent: from a Modicon address
type         data type, datatype, format: int16 … float64, bool, bit(N), string(N);
             PLC names too: int, uint, word, dint, udint, dword, real, lreal
order        byte order, word order, endianness: ABCD BADC CDAB DCBA, big, little,
             word swap, byte swap
scale        multiplier, gain, factor; offset; unit (units, eng unit); description;
             kind; access (R/RW: writable registers become setpoints); low, high,
             min, max, default; unit id (slave, slave id, device id); bit; length
===========  =====================================================================

Blank lines and lines starting with ``#`` are skipped. Errors name the file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from schemas.exceptions import CatalogError

__all__ = ["read_register_csv", "slug"]

_COLUMNS: dict[str, str] = {}
for _canon, _names in {
    "name": ("name", "tag", "tagname", "point", "signal", "pointname"),
    "address": ("address", "register", "addr", "registeraddress", "offsetaddress", "regaddr"),
    "table": ("table", "area", "registertype", "objecttype", "fc", "functioncode"),
    "type": ("type", "datatype", "format", "dtype"),
    "order": ("order", "byteorder", "wordorder", "endianness", "endian", "swap"),
    "scale": ("scale", "multiplier", "gain", "factor", "scalefactor"),
    "offset": ("offset",),
    "unit": ("unit", "units", "engunit", "engineeringunit", "engineeringunits", "uom"),
    "description": ("description", "desc", "comment", "comments"),
    "kind": ("kind",),
    "access": ("access", "rw", "readwrite", "mode"),
    "low": ("low",), "high": ("high",), "min": ("min", "minimum"), "max": ("max", "maximum"),
    "default": ("default",),
    "unit_id": ("unitid", "slave", "slaveid", "deviceid", "unit_id"),
    "bit": ("bit", "bitindex"),
    "length": ("length", "len", "size"),
}.items():
    for _n in _names:
        _COLUMNS[_n] = _canon

_TABLES = {
    "holding": ("holding", "hr", "holdingregister", "holdingregisters", "4x", "fc3", "3"),
    "input": ("input", "ir", "inputregister", "inputregisters", "3x", "fc4", "4"),
    "coil": ("coil", "coils", "co", "0x", "fc1", "1"),
    "discrete": ("discrete", "di", "discreteinput", "discreteinputs", "1x", "fc2", "2"),
}
_TABLE = {alias: table for table, aliases in _TABLES.items() for alias in aliases}
_TYPES = {
    "int": "int16", "short": "int16", "uint": "uint16", "word": "uint16", "ushort": "uint16",
    "dint": "int32", "long": "int32", "udint": "uint32", "dword": "uint32", "ulong": "uint32",
    "lint": "int64", "ulint": "uint64", "lword": "uint64", "real": "float32",
    "float": "float32", "lreal": "float64", "double": "float64", "boolean": "bool",
}
_ORDERS = {"big": "ABCD", "bigendian": "ABCD", "little": "DCBA", "littleendian": "DCBA",
           "wordswap": "CDAB", "swapped": "CDAB", "byteswap": "BADC"}
_MODICON = {"0": "coil", "1": "discrete", "3": "input", "4": "holding"}
_NUMBERS = ("scale", "offset", "low", "high", "min", "max", "default")


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def slug(text: str, sep: str = "_") -> str:
    """``Oil Temp. (°C)`` -> ``oil_temp_c``: the name a catalog tag may carry."""
    out = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    return out or "tag"


def read_register_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, tag entry with a ``register``) for each data row of the CSV."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(f"cannot read the register map {path}: {exc.strerror}; check the "
                           "machine's register_map (relative to the catalog file)") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"the register map {path} is not UTF-8 text ({exc.reason}); save "
                           "it as CSV UTF-8") from exc
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CatalogError(f"the register map {path} has no header row")
    dialect = csv.Sniffer().sniff(lines[0][1], delimiters=",;\t") if "," not in lines[0][1] \
        else csv.excel
    rows = list(csv.reader([ln for _, ln in lines], dialect))
    header = [_COLUMNS.get(_key(h)) for h in rows[0]]
    for need in ("name", "address"):
        if need not in header:
            raise CatalogError(
                f"register map {path} line {lines[0][0]}: no {need!r} column in the header "
                f"{rows[0]}; name the columns e.g. name,table,address,type,order,scale,unit")
    out: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for (line, _), cells in zip(lines[1:], rows[1:], strict=True):
        raw = {col: cell.strip() for col, cell in zip(header, cells, strict=False)
               if col is not None and cell.strip()}
        if not raw:
            continue
        try:
            entry = _entry(raw)
        except ValueError as exc:
            raise CatalogError(f"register map {path} line {line}: {exc}; fix that row") from exc
        if entry["name"] in seen:
            raise CatalogError(
                f"register map {path} line {line}: tag name {entry['name']!r} (from "
                f"{raw.get('name')!r}) is already used on line {seen[entry['name']]}; give "
                "the rows distinct names")
        seen[entry["name"]] = line
        out.append((line, entry))
    return out


def _entry(raw: dict[str, str]) -> dict[str, Any]:
    """One row's cells (by canonical column) -> a catalog tag entry."""
    if "name" not in raw or "address" not in raw:
        raise ValueError("the row needs a name and an address")
    address_text = raw["address"]
    if not address_text.isdigit():
        raise ValueError(f"address {address_text!r} is not a whole number")
    address = int(address_text)
    table = None
    if "table" in raw:
        table = _TABLE.get(_key(raw["table"]))
        if table is None:
            raise ValueError(f"table {raw['table']!r} is not holding, input, coil or discrete")
    # Modicon numbering: 40001 is holding register 0, 30001 input 0, 10001 discrete 0,
    # 00001 coil 0; taken as such without a table, or when the table agrees with it
    modicon = (_MODICON.get(address_text[0])
               if len(address_text) in (5, 6) and int(address_text[1:]) >= 1 else None)
    if table is None and modicon is None:
        raise ValueError(
            f"address {address_text} has no table: add a table column (holding, input, "
            "coil, discrete) or write Modicon addresses such as 40001")
    if modicon is not None and table in (None, modicon):
        table, address = modicon, int(address_text[1:]) - 1
    register: dict[str, Any] = {"table": table, "address": address}
    if "type" in raw:
        kind = raw["type"].strip().lower()
        register["type"] = _TYPES.get(_key(kind), kind)
    elif table in ("coil", "discrete"):
        register["type"] = "bool"
    if "order" in raw:
        register["order"] = _ORDERS.get(_key(raw["order"]), raw["order"].strip().upper())
    for col in ("scale", "offset"):
        if col in raw:
            register[col] = _number(col, raw[col])
    for col in ("unit_id", "bit", "length"):
        if col in raw:
            if not raw[col].isdigit():
                raise ValueError(f"{col} {raw[col]!r} is not a whole number")
            register[col] = int(raw[col])
    entry: dict[str, Any] = {"name": slug(raw["name"]), "register": register}
    if slug(raw["name"]) != raw["name"] or "description" in raw:
        entry["description"] = raw.get("description") or raw["name"]
    if "unit" in raw:
        entry["unit"] = raw["unit"]
    for col in ("low", "high", "min", "max", "default"):
        if col in raw:
            entry[col] = _number(col, raw[col])
    if "kind" in raw:
        entry["kind"] = raw["kind"].lower()
    elif str(register.get("type", "")).startswith("string"):
        entry["kind"] = "text"
    elif "w" in raw.get("access", "").lower():
        entry["kind"] = "setpoint"
    elif table in ("coil", "discrete") or register.get("type") in ("bool", "bit"):
        entry["kind"] = "state"
    return entry


def _number(col: str, text: str) -> float:
    try:
        return float(text.replace(",", ".") if text.count(",") == 1 and "." not in text
                     else text)
    except ValueError:
        raise ValueError(f"{col} {text!r} is not a number") from None
