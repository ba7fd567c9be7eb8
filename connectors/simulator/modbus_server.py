"""The simulator's Modbus TCP side: one device per Modbus machine, at its ``unit_id``.

Each device keeps a register image of its four tables. pymodbus calls our ``action`` on
every request, and the action copies the image into the server's registers (reads always
see the latest tick) and applies client writes to the image. Only setpoint tags can be
written; any other write gets an ILLEGAL_ADDRESS exception response.
"""

from __future__ import annotations

import logging

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore
from pymodbus.simulator.simutils import SimUtils

from connectors.simulator.exceptions import PortInUseError
from connectors.simulator.registers import decode, encode
from schemas.catalog import Catalog, MachineSpec, TagSpec
from schemas.modbus import BIT_TABLES

__all__ = ["DeviceImage", "ModbusSide"]

logger = logging.getLogger(__name__)

_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input"}
_FC_TABLE.update({fc: "holding" for fc in (3, 6, 16, 22, 23)})


class DeviceImage:
    """The four Modbus tables of one machine: registers as words, coils/inputs as bools."""

    def __init__(self, machine: MachineSpec) -> None:
        self.machine = machine
        self.tags = [t for t in machine.tags if t.modbus is not None]
        size = {table: 1 for table in ("input", "holding", "coil", "discrete")}
        self.writable: dict[str, set[int]] = {"holding": set(), "coil": set()}
        for t in self.tags:
            assert t.modbus is not None
            end = t.modbus.address + t.modbus.width
            size[t.modbus.table] = max(size[t.modbus.table], end)
            if t.writable and t.modbus.table in self.writable:
                self.writable[t.modbus.table].update(range(t.modbus.address, end))
        for table in BIT_TABLES:  # whole 16-bit words of bits
            size[table] = -(-size[table] // 16) * 16
        self.size = size
        self.words: dict[str, list[int]] = {"input": [0] * size["input"],
                                            "holding": [0] * size["holding"]}
        self.bits: dict[str, list[bool]] = {"coil": [False] * size["coil"],
                                            "discrete": [False] * size["discrete"]}

    def set(self, tag: TagSpec, value: float) -> None:
        reg = tag.modbus
        assert reg is not None
        if reg.table in BIT_TABLES:
            self.bits[reg.table][reg.address] = bool(value)
        else:
            image = self.words[reg.table]
            words = encode(value, reg, image[reg.address : reg.address + 1])
            image[reg.address : reg.address + len(words)] = words

    def get(self, tag: TagSpec) -> float:
        reg = tag.modbus
        assert reg is not None
        if reg.table in BIT_TABLES:
            return 1.0 if self.bits[reg.table][reg.address] else 0.0
        return decode(self.words[reg.table][reg.address : reg.address + reg.width], reg)

    def sim_device(self, action: SimAction) -> SimDevice:
        def bits(table: str) -> list[SimData]:
            return [SimData(0, count=self.size[table], values=False, datatype=DataType.BITS)]

        def regs(table: str) -> list[SimData]:
            return [SimData(0, count=self.size[table], values=0, datatype=DataType.REGISTERS)]

        return SimDevice(
            id=self.machine.unit_id,
            simdata=(bits("coil"), bits("discrete"), regs("holding"), regs("input")),
            action=action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus hook: refresh the server's registers; accept writes to setpoints only."""
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            span = range(address, address + len(set_values))
            if not set(span) <= self.writable.get(table, set()):
                return ExcCodes.ILLEGAL_ADDRESS
            if table in BIT_TABLES:
                for i, v in zip(span, set_values, strict=True):
                    self.bits[table][i] = bool(v)
            else:
                for i, v in zip(span, set_values, strict=True):
                    self.words[table][i] = int(v) & 0xFFFF
        if table in BIT_TABLES:
            packed = SimUtils.bitsToRegisters(self.bits[table])
            current_registers[: len(packed)] = packed
        else:
            current_registers[: len(self.words[table])] = self.words[table]
        return None


class _Devices(SimCore):
    """pymodbus's device set, but an unknown unit id gets the exception response pymodbus
    intends (GATEWAY_NO_RESPONSE) instead of a KeyError traceback in the server log."""

    def _known(self, device_id: int) -> None:
        if device_id not in self.devices and 0 not in self.devices:
            raise NoSuchIdException(f"no simulated Modbus device at unit id {device_id}")

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        self._known(device_id)
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        self._known(device_id)
        return await super().async_setValues(device_id, func_code, address, values)


class ModbusSide:
    """A pymodbus TCP server on 127.0.0.1:port serving the catalog's Modbus machines.

    Lifecycle: construct, ``await start()``, ``publish``/``setpoints`` per tick, ``await stop()``.
    """

    def __init__(self, catalog: Catalog, port: int) -> None:
        self.catalog = catalog
        self.port = port
        modbus = {s.name for s in catalog.sources if s.protocol == "modbus"}
        self.machines = [m for m in catalog.machines if m.source in modbus]
        self.images = {m.name: DeviceImage(m) for m in self.machines}
        # (full path, image, tag) of every tag, and the value last written into its image
        self._tags = [(catalog.tag_path(m, t), self.images[m.name], t) for m in self.machines
                      for t in self.images[m.name].tags]
        self._written: dict[str, float] = {}
        self._server: ModbusTcpServer | None = None

    async def start(self, values: dict[str, float]) -> None:
        self.publish(values, setpoints_too=True)
        devices = [img.sim_device(img.action) for img in self.images.values()]
        server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        server.context = _Devices(devices)
        try:
            await server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise PortInUseError("Modbus", self.port, str(exc)) from exc
        self._server = server
        logger.info("Modbus simulator serving %d device(s) on 127.0.0.1:%d",
                    len(devices), self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def publish(self, values: dict[str, float], setpoints_too: bool = False) -> None:
        """Write the tick's values into the images (setpoints only at start: clients own
        them); a value that did not change since it was last written is not encoded again."""
        written = self._written
        for path, img, t in self._tags:
            value = values[path]
            if setpoints_too or (not t.writable and written.get(path) != value):
                img.set(t, value)
                written[path] = value

    def publish_one(self, path: str, value: float) -> None:
        """Write one tag's value into its device's image (other tags are ignored)."""
        for p, img, t in self._tags:
            if p == path:
                img.set(t, value)
                self._written[path] = value
                return

    def setpoints(self) -> dict[str, float]:
        """Every setpoint tag's value as clients last wrote it, by full path."""
        out: dict[str, float] = {}
        for m in self.machines:
            img = self.images[m.name]
            for t in img.tags:
                if t.writable:
                    out[self.catalog.tag_path(m, t)] = img.get(t)
        return out
