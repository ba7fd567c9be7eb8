"""The plant ``millstream bench latency`` runs: fast-path CNC machines and a bulk load.

Two sources on the one simulator, as a plant would write them:

- ``fast`` (OPC-UA): ``machines`` CNC machines (the simulator's cnc model). Each spindle
  temperature feeds a limit rule and is monitored with short intervals (``fast_ms``
  sampling and publishing); the machines' other tags keep the source's 100 ms. The rule
  commands the spindle speed setpoint to the value it already has, so the commands do not
  change the physics that the detector learns.
- ``bulk`` (Modbus TCP): press machines (the press model), each with its seven measured
  press tags and spare input registers (read as 0) up to ``BULK_TAGS`` tags in 125
  registers, one block read a poll, polled every ``BULK_POLL_MS``: the background load,
  ``bulk_machines`` x ``BULK_TAGS`` readings per poll.

Streams and detector settings are those of the shipped plant (``schemas/plant.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from schemas.catalog import DEFAULT_CATALOG

__all__ = ["BOUND", "BULK_POLL_MS", "BULK_SOURCE", "BULK_TAGS", "FAST_SOURCE", "SETPOINT",
           "fast_machines", "write_catalog"]

FAST_SOURCE = "fast"
BULK_SOURCE = "bulk"
BOUND = 85.0  # the limit on every fast machine's spindle_temp
SETPOINT = 8000.0  # the spindle speed the rules command: the simulator's default
BULK_POLL_MS = 100
BULK_TAGS = 118  # readings per bulk machine and poll: 7 press tags (14 registers), 111 spare
_PRESS_TAGS = [  # the input registers of the shipped press-01's map
    {"name": "hydraulic_pressure", "unit": "bar", "register": {"table": "input", "address": 0}},
    {"name": "oil_temp", "unit": "degC", "register": {"table": "input", "address": 2}},
    {"name": "motor_current", "unit": "A", "register": {"table": "input", "address": 4}},
    {"name": "vibration_rms", "unit": "mm/s", "register": {"table": "input", "address": 6}},
    {"name": "ram_position", "unit": "mm", "register": {"table": "input", "address": 8}},
    {"name": "cycle_time", "unit": "s", "register": {"table": "input", "address": 10}},
    {"name": "stroke_count", "kind": "counter",
     "register": {"table": "input", "address": 12, "type": "uint32"}},
]
_CNC_TAGS = ("spindle_speed", "vibration_rms", "motor_current", "coolant_temp", "cycle_time")


def fast_machines(machines: int) -> list[str]:
    return [f"cnc-{m:02d}" for m in range(1, machines + 1)]


def _cnc(name: str, fast_ms: float) -> dict[str, Any]:
    def node(tag: str) -> str:
        return f"nsu=plant;s={name}.{tag}"

    return {
        "name": name, "area": "machining", "line": "fast", "source": FAST_SOURCE,
        "tags": [
            {"name": "spindle_temp", "unit": "degC", "low": 20, "high": 85,
             "node": node("spindle_temp"),
             "monitoring": {"sampling_ms": fast_ms, "publishing_ms": fast_ms}},
            {"name": "spindle_speed_sp", "kind": "setpoint", "unit": "rpm", "min": 1000,
             "max": 12000, "default": SETPOINT, "max_step": 4000,
             "node": node("spindle_speed_sp")},
            *({"name": t, "node": node(t)} for t in _CNC_TAGS),
            {"name": "part_count", "kind": "counter", "node": node("part_count")},
        ],
    }


def _press(unit: int) -> dict[str, Any]:
    spares = [{"name": f"spare_{i:03d}", "kind": "counter",
               "register": {"table": "input", "address": 14 + i, "type": "uint16"}}
              for i in range(BULK_TAGS - len(_PRESS_TAGS))]
    return {"name": f"press-{unit:02d}", "area": "forming", "line": "bulk",
            "source": BULK_SOURCE, "unit_id": unit, "tags": [*_PRESS_TAGS, *spares]}


def write_catalog(path: Path, *, opcua_endpoint: str, modbus_endpoint: str, machines: int,
                  bulk_machines: int, fast_ms: float, cooldown_s: float) -> Path:
    """Write the benchmark's catalog to ``path`` and return it."""
    plant = yaml.safe_load(DEFAULT_CATALOG.read_text())
    doc = {
        "enterprise": "bench", "site": "latency",
        "sources": [
            {"name": FAST_SOURCE, "protocol": "opcua", "endpoint": opcua_endpoint,
             "interval_ms": 100, "namespace": "urn:millstream:plant",
             "namespaces": {"plant": "urn:millstream:plant"}},
            *([{"name": BULK_SOURCE, "protocol": "modbus", "endpoint": modbus_endpoint,
                "interval_ms": BULK_POLL_MS}] if bulk_machines else []),
        ],
        "machines": [*(_cnc(m, fast_ms) for m in fast_machines(machines)),
                     *(_press(u) for u in range(1, bulk_machines + 1))],
        "streams": plant["streams"],
        "detectors": plant["detectors"], "alarms": plant["alarms"],
        "rules": [{"name": f"{m}-overheat", "kind": "limit", "tag": f"{m}/spindle_temp",
                   "statistic": "value", "above": BOUND, "cooldown_s": cooldown_s,
                   "action": {"setpoint": f"{m}/spindle_speed_sp", "value": SETPOINT}}
                  for m in fast_machines(machines)],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
