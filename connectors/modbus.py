"""Modbus TCP source: polls each machine's register blocks every ``interval_ms``.

Every poll reads each contiguous block of a machine's registers in one request
(:mod:`connectors.modbus_map`), stamps the values with the poll time and emits them. A
failed read emits the affected tags as BAD with no value, so a gap is visible downstream
instead of silent; a lost connection is retried with backoff while the poll goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.base import FramePublisher, Source
from connectors.exceptions import ConnectorConfigError
from connectors.modbus_map import ReadBlock, decode_block, plan_reads
from schemas.catalog import Catalog, SourceSpec
from schemas.events import now_ms
from schemas.modbus import BIT_TABLES, parse_endpoint
from schemas.readings import Quality

__all__ = ["MachinePlan", "ModbusSource"]

logger = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class MachinePlan:
    """The reads one poll of one machine makes."""

    machine: str
    unit_id: int
    blocks: tuple[ReadBlock, ...]


def machine_plans(catalog: Catalog, source: str) -> list[MachinePlan]:
    plans = []
    for m in catalog.machines_of(source):
        regs = [(catalog.tag_path(m, t), t.modbus) for t in m.tags if t.modbus is not None]
        if regs:
            plans.append(MachinePlan(m.name, m.unit_id, tuple(plan_reads(regs))))
    return plans


class ModbusSource(Source):
    """Polls one Modbus TCP endpoint (one gateway, one or more unit ids).

    Lifecycle as :class:`~connectors.base.Source`; ``run()`` connects, polls and reconnects.
    """

    protocol = "modbus"

    def __init__(
        self,
        catalog: Catalog,
        spec: SourceSpec,
        publisher: FramePublisher,
        *,
        endpoint: str | None = None,
        status_file: Path | None = None,
        frame_ms: int = 200,
        timeout_s: float = 1.0,
    ) -> None:
        super().__init__(spec.name, publisher, status_file=status_file, frame_ms=frame_ms)
        self.endpoint = endpoint or spec.endpoint
        self.host, self.port = parse_endpoint(self.endpoint)
        self.interval_s = spec.interval_ms / 1000
        self.plans = machine_plans(catalog, spec.name)
        if not self.plans:
            raise ConnectorConfigError(
                f"Modbus source {spec.name!r} has no machines with registers in the catalog; "
                f"add machines with 'source: {spec.name}' and a 'register' per tag"
            )
        # reconnect_delay=0: pymodbus does not reconnect on its own; run() does, with backoff
        self.client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=timeout_s, retries=0, reconnect_delay=0
        )
        self.polls = 0
        self.reads = 0

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        retry_at = 0.0
        next_tick = time.monotonic()
        while self.running:
            if not self.client.connected and time.monotonic() >= retry_at:
                if await self._connect():
                    backoff = BACKOFF_START_S
                else:
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
            if self.client.connected:
                await self.poll_once()
            else:
                self._emit_gap(now_ms(), [t for p in self.plans for b in p.blocks for t in b.tags])
            next_tick += self.interval_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # overran the interval: skip ticks rather than burst to catch up
                next_tick, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)

    async def poll_once(self) -> None:
        """Read every block of every machine once and emit the values."""
        self.polls += 1
        for plan in self.plans:
            for block in plan.blocks:
                await self._read_block(plan, block)

    async def cleanup(self) -> None:
        self.client.close()

    async def _connect(self) -> bool:
        try:
            ok = await self.client.connect()
        except (ModbusException, OSError) as exc:
            logger.debug("Modbus connect to %s failed: %r", self.endpoint, exc)
            ok = False
        was = self.connected
        self.connected = bool(ok) and self.client.connected
        if self.connected:
            logger.info("connected to Modbus server %s", self.endpoint)
        else:
            self._error(
                f"cannot reach Modbus server {self.endpoint}: is the device (or the simulator, "
                "`millstream simulate`) running and reachable? retrying",
                loud=was or self.errors == 0,
            )
        return self.connected

    async def _read_block(self, plan: MachinePlan, block: ReadBlock) -> None:
        ts = now_ms()
        try:
            response = await self._reader(block.table)(
                block.address, count=block.count, device_id=plan.unit_id
            )
        except (TimeoutError, ModbusException, OSError) as exc:
            self._read_failed(plan, block, ts, f"{exc}")
            return
        self.reads += 1
        if response.isError():
            self._read_failed(plan, block, ts, f"the device answered {response}")
            return
        data = response.bits if block.table in BIT_TABLES else response.registers
        try:
            values = decode_block(block, data)
        except ValueError as exc:
            self._read_failed(plan, block, ts, str(exc))
            return
        for path, value in values:
            self.emit(path, ts, value, Quality.GOOD)

    def _read_failed(self, plan: MachinePlan, block: ReadBlock, ts: int, why: str) -> None:
        self._emit_gap(ts, block.tags)
        lost = not self.client.connected
        if lost and self.connected:
            logger.warning("lost the connection to Modbus server %s", self.endpoint)
        self.connected = self.client.connected
        self._error(
            f"Modbus read of {block.count} {block.table} value(s) at {block.address} "
            f"from unit {plan.unit_id} ({plan.machine}) at {self.endpoint} failed: {why}",
            loud=not lost,
        )

    def _emit_gap(self, ts: int, tags: list[str]) -> None:
        for tag in tags:
            self.emit(tag, ts, None, Quality.BAD)

    def _error(self, message: str, *, loud: bool) -> None:
        if loud and message != self.last_error:
            logger.warning("%s", message)
        self.record_error(message)

    def _reader(self, table: str) -> Callable[..., Awaitable[Any]]:
        return {
            "input": self.client.read_input_registers,
            "holding": self.client.read_holding_registers,
            "coil": self.client.read_coils,
            "discrete": self.client.read_discrete_inputs,
        }[table]
