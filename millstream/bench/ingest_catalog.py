"""The catalog ``millstream bench ingest`` runs against: N OPC-UA tags and a Modbus map.

A plain catalog YAML, as a plant would write one: OPC-UA machines of ``TAGS_PER_MACHINE``
Double tags, each naming its node id (``node:``); Modbus machines (one unit id each) whose
register maps mix 16- and 32-bit integers with small unused gaps, so the connector's
coalescing has to span gaps to read a machine in a few block reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MODBUS_SOURCE",
    "NAMESPACE",
    "OPCUA_SOURCE",
    "TAGS_PER_MACHINE",
    "modbus_layout",
    "write_catalog",
]

NAMESPACE = "urn:millstream:bench"
OPCUA_SOURCE = "bench-opcua"
MODBUS_SOURCE = "bench-modbus"
TAGS_PER_MACHINE = 100
# a repeating register map: (type, registers) per tag; a gap of GAP unused registers
# after every GAP_EVERY tags (within the connector's default max_gap of 4)
_PATTERN = (("uint16", 1), ("uint32", 2), ("int16", 1), ("uint16", 1), ("uint32", 2))
GAP_EVERY = 10
GAP = 2


def modbus_layout(span: int) -> list[tuple[str, int, str, int]]:
    """One machine's holding registers within addresses [0, span): (tag, address, type,
    width) in address order."""
    out: list[tuple[str, int, str, int]] = []
    address = 0
    while True:
        kind, width = _PATTERN[len(out) % len(_PATTERN)]
        if address + width > span:
            return out
        out.append((f"r{address:05d}", address, kind, width))
        address += width
        if len(out) % GAP_EVERY == 0:
            address += GAP


def _opcua_machines(tags: int) -> list[dict[str, Any]]:
    machines = []
    for m in range(-(-tags // TAGS_PER_MACHINE)):
        count = min(TAGS_PER_MACHINE, tags - m * TAGS_PER_MACHINE)
        name = f"opc-{m:04d}"
        machines.append({
            "name": name, "area": "bench", "line": "opcua", "source": OPCUA_SOURCE,
            "tags": [{"name": f"t{t:03d}", "node": f"nsu=bench;s={name}.t{t:03d}"}
                     for t in range(count)],
        })
    return machines


def _modbus_machines(machines: int, span: int) -> list[dict[str, Any]]:
    layout = modbus_layout(span)
    return [{
        "name": f"plc-{u:03d}", "area": "bench", "line": "modbus", "source": MODBUS_SOURCE,
        "unit_id": u,
        "tags": [{"name": name, "kind": "counter",
                  "register": {"table": "holding", "address": address, "type": kind}}
                 for name, address, kind, _ in layout],
    } for u in range(1, machines + 1)]


def write_catalog(path: Path, *, opcua_tags: int, opcua_endpoint: str, interval_ms: int,
                  modbus_machines: int, modbus_span: int, modbus_endpoint: str,
                  modbus_interval_ms: int = 10) -> Path:
    """Write the benchmark's catalog to ``path`` and return it."""
    doc = {
        "enterprise": "bench",
        "site": "ingest",
        "sources": [
            {"name": OPCUA_SOURCE, "protocol": "opcua", "endpoint": opcua_endpoint,
             "interval_ms": interval_ms, "namespace": NAMESPACE,
             "namespaces": {"bench": NAMESPACE}},
            {"name": MODBUS_SOURCE, "protocol": "modbus", "endpoint": modbus_endpoint,
             "interval_ms": modbus_interval_ms, "max_gap": 4, "max_block": 125},
        ],
        "machines": _opcua_machines(opcua_tags) + _modbus_machines(modbus_machines, modbus_span),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=200))
    return path
