"""What the catalog needs to know of each browsed variable, read in batched Read requests.

DataType, ValueRank and AccessLevel of every variable, then the values of its EURange and
EngineeringUnits properties, then the name and built-in base of each distinct data type
(few, however many variables). A node the server cannot read keeps its defaults.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import Client, ua
from asyncua.common.ua_utils import get_base_data_type

__all__ = ["BrowsedVariable", "read_details", "std"]

logger = logging.getLogger(__name__)


def std(ident: int) -> ua.NodeId:
    """A namespace-0 node id (standard objects, reference types, data types)."""
    return ua.NodeId(ua.Int32(ident))


@dataclass(slots=True)
class BrowsedVariable:
    """A variable found by a walk: its names, the object holding it (display-name path
    from below the root), and what the Reads found (``data_type`` is the type's name,
    ``base_type`` the built-in type it derives from, e.g. Double or Enumeration)."""

    nodeid: ua.NodeId
    name: str  # display name (the browse name when the display name is empty)
    browse_name: str
    holder: tuple[str, ...]
    holder_id: ua.NodeId
    data_type: str = ""
    base_type: str = ""
    scalar: bool = True
    writable: bool = False
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    eu_range: ua.NodeId | None = None
    eu_units: ua.NodeId | None = None


async def _read(client: Client, items: Sequence[tuple[ua.NodeId, int]],
                limit: int) -> list[ua.DataValue]:
    out: list[ua.DataValue] = []
    for start in range(0, len(items), limit):
        params = ua.ReadParameters(NodesToRead=[
            ua.ReadValueId(NodeId=n, AttributeId=ua.UInt32(a))
            for n, a in items[start : start + limit]])
        out.extend(await client.uaclient.read(params))
    return out


def _value(dv: ua.DataValue) -> object:
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return None
    return dv.Value.Value if dv.Value is not None else None


async def read_details(client: Client, variables: Sequence[BrowsedVariable],
                       limit: int) -> None:
    """Fill in each variable's data type, scalar/array, writability, unit and range."""
    attrs = (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank, ua.AttributeIds.AccessLevel)
    values = await _read(client, [(v.nodeid, a) for v in variables for a in attrs], limit)
    types: dict[ua.NodeId, list[BrowsedVariable]] = {}
    for i, v in enumerate(variables):
        dtype, rank, access = (_value(dv) for dv in values[3 * i : 3 * i + 3])
        if isinstance(dtype, ua.NodeId):
            types.setdefault(dtype, []).append(v)
        v.scalar = rank in (None, ua.ValueRank.Scalar)
        v.writable = isinstance(access, int) and bool(access & ua.AccessLevel.CurrentWrite.mask)
    props = [(v, p) for v in variables for p in (v.eu_range, v.eu_units) if p is not None]
    values = await _read(client, [(p, ua.AttributeIds.Value) for _, p in props], limit)
    for (v, _), dv in zip(props, values, strict=True):
        value = _value(dv)
        if isinstance(value, ua.Range) and math.isfinite(value.Low) and math.isfinite(
                value.High):
            v.low, v.high = float(value.Low), float(value.High)
        elif isinstance(value, ua.EUInformation) and value.DisplayName is not None:
            v.unit = value.DisplayName.Text or None
    for dtype, users in types.items():
        name, base = await _type_names(client, dtype)
        for v in users:
            v.data_type, v.base_type = name, base


async def _type_names(client: Client, dtype: ua.NodeId) -> tuple[str, str]:
    """(the data type's name, the name of the built-in type it derives from)."""
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) and dtype.Identifier < 30:
        name = ua.ObjectIdNames.get(dtype.Identifier, dtype.to_string())
        return name, name
    node = client.get_node(dtype)
    try:
        name = (await node.read_browse_name()).Name or dtype.to_string()
        base = (await (await get_base_data_type(node)).read_browse_name()).Name or ""
    except ua.UaError as exc:
        logger.warning("cannot find the base of data type %s: %s", dtype.to_string(), exc)
        return dtype.to_string(), ""
    return name, base
