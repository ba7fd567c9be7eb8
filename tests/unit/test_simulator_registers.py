"""The simulator's register image follows the catalog's order, scale and bit layout."""

from __future__ import annotations

import struct

from connectors.simulator.modbus_server import DeviceImage
from schemas.catalog import MachineSpec


def machine() -> MachineSpec:
    return MachineSpec.model_validate({
        "name": "m", "area": "a", "line": "l", "source": "plc", "tags": [
            {"name": "p", "register": {"table": "input", "address": 0, "order": "CDAB"}},
            {"name": "t", "register": {"table": "input", "address": 2, "type": "int16",
                                       "scale": 0.1}},
            {"name": "big", "register": {"table": "input", "address": 3, "type": "uint16"}},
            {"name": "a", "kind": "state", "register": {"table": "holding", "address": 0,
                                                       "type": "bit(1)"}},
            {"name": "b", "kind": "state", "register": {"table": "holding", "address": 0,
                                                       "type": "bit(4)"}},
        ]})


def test_image_uses_order_scale_and_bits() -> None:
    img = DeviceImage(machine())
    tags = {t.name: t for t in img.tags}
    img.set(tags["p"], 187.5)
    img.set(tags["t"], 21.7)
    img.set(tags["big"], 1e9)  # clamped, not an error: physics may run past a register
    img.set(tags["a"], 1.0)
    img.set(tags["b"], 1.0)
    hi, lo = struct.unpack(">HH", struct.pack(">f", 187.5))
    assert img.words["input"][0:4] == [lo, hi, 217, 0xFFFF]
    assert img.words["holding"][0] == 0b1_0010
    img.set(tags["a"], 0.0)
    assert img.words["holding"][0] == 0b1_0000
    assert img.get(tags["p"]) == 187.5 and img.get(tags["b"]) == 1.0
