"""The Modbus register image and the hook pymodbus calls, without a server."""

from __future__ import annotations

import asyncio
import struct

from pymodbus.constants import ExcCodes

from connectors.simulator.modbus_server import DeviceImage
from schemas.catalog import Catalog, TagSpec


def press_image(catalog: Catalog) -> DeviceImage:
    return DeviceImage(next(m for m in catalog.machines if m.name == "press-01"))


def spec(image: DeviceImage, name: str) -> TagSpec:
    return next(t for t in image.tags if t.name == name)


def test_image_holds_tags_at_their_registers(catalog: Catalog) -> None:
    img = press_image(catalog)
    img.set(spec(img, "hydraulic_pressure"), 187.5)
    img.set(spec(img, "stroke_count"), 70000)
    img.set(spec(img, "fault"), 1.0)
    assert img.words["input"][0:2] == list(struct.unpack(">HH", struct.pack(">f", 187.5)))
    assert img.words["input"][12:14] == [1, 70000 - 65536]
    assert img.bits["discrete"][1] is True
    assert img.get(spec(img, "stroke_count")) == 70000


def test_reads_refresh_the_server_registers(catalog: Catalog) -> None:
    img = press_image(catalog)
    img.set(spec(img, "oil_temp"), 50.0)
    img.set(spec(img, "running"), 1.0)
    regs = [0] * (img.size["input"] + 1)
    assert asyncio.run(img.action(4, 0, 2, 2, regs, None)) is None
    assert regs[2:4] == img.words["input"][2:4]
    bits = [0] * 2
    assert asyncio.run(img.action(2, 0, 0, 1, bits, None)) is None
    assert bits[0] & 1 == 1  # running is bit 0 of the first word


def test_only_setpoints_take_writes(catalog: Catalog) -> None:
    img = press_image(catalog)
    regs = [0] * (img.size["holding"] + 1)
    words = list(struct.unpack(">HH", struct.pack(">f", 160.0)))
    assert asyncio.run(img.action(16, 0, 0, 2, regs, words)) is None
    assert img.get(spec(img, "pressure_sp")) == 160.0
    assert asyncio.run(img.action(16, 0, 1, 2, regs, [0, 0])) == ExcCodes.ILLEGAL_ADDRESS
    assert asyncio.run(img.action(5, 0, 0, 1, [0, 0], [True])) == ExcCodes.ILLEGAL_ADDRESS
