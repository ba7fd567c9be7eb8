"""Many variables on an asyncua test server, built fast through batched AddNodes.

``add_bulk(server, count)`` adds Objects/Bulk/Area a/Line l/Machine m/Tag t (numeric node
ids in ``urn:vendor:bulk``), every ``analog_every``-th an AnalogItem with EURange and
EngineeringUnits, so browse tests and measurements walk a realistic shape at any size.
"""

from __future__ import annotations

from asyncua import Server, ua

from tests.support.opcua_interop import NodeBatch, nid
from tests.support.opcua_paging import std

__all__ = ["BULK_URI", "add_bulk"]

BULK_URI = "urn:vendor:bulk"


async def add_bulk(server: Server, count: int, *, per_machine: int = 10,
                   machines_per_line: int = 20, lines_per_area: int = 10,
                   analog_every: int = 10, flush_every: int = 5000) -> int:
    """Add ``count`` variables; returns the number of machines (objects holding them)."""
    ns = await server.register_namespace(BULK_URI)
    b = NodeBatch(server)
    bulk = b.folder(std(85), nid(1, ns), "Bulk")
    ids = iter(range(100, 10**9))
    folders: dict[tuple[int, ...], ua.NodeId] = {}
    machines = 0
    for i in range(count):
        m, t = divmod(i, per_machine)
        line, machine = divmod(m, machines_per_line)
        area, line = divmod(line, lines_per_area)
        if (area,) not in folders:
            folders[(area,)] = b.folder(bulk, nid(next(ids), ns), f"Area {area}")
        if (area, line) not in folders:
            folders[(area, line)] = b.folder(folders[(area,)], nid(next(ids), ns),
                                             f"Line {line}")
        if t == 0:
            machines += 1
            folders[(area, line, machine)] = b.folder(
                folders[(area, line)], nid(next(ids), ns), f"Machine {machine}",
                folder=False)
        analog = ("CEL", "°C", 0.0, 100.0 + t) if t % analog_every == 0 else None
        b.variable(folders[(area, line, machine)], nid(next(ids), ns), f"Tag {t}",
                   "Double", float(i), analog=analog)
        if len(b.items) >= flush_every:
            await b.flush()
    await b.flush()
    return machines
