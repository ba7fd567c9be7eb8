"""Modbus source: polls every Modbus machine of one catalog source, each at its own rate.

A source may cover many devices at different endpoints (a machine's own ``endpoint``) and
unit ids. Each device is polled by its own task every ``poll_ms`` (default the source's
``interval_ms``), at most ``concurrency`` devices at once; devices at one endpoint share
one connection (:class:`~connectors.modbus_device.Link`). What a poll reads, how refusals
and timeouts are handled and backed off is :mod:`connectors.modbus_device`; the blocks and
their decoding are :mod:`connectors.modbus_map`. Every failed read emits its tags as BAD
with the reason in ``status``, so a gap is visible downstream instead of silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from connectors.base import FRAME_IDLE_MS, FRAME_MS, FramePublisher, Source
from connectors.exceptions import ConnectorConfigError
from connectors.modbus_device import Link, ModbusDevice
from connectors.modbus_map import TagValue, machine_plans
from schemas.catalog import Catalog, SourceSpec
from schemas.readings import Quality

__all__ = ["ModbusSource"]

logger = logging.getLogger(__name__)


class ModbusSource(Source):
    """Polls the Modbus devices of one catalog source (Modbus TCP, or RTU over TCP).

    Lifecycle as :class:`~connectors.base.Source`; ``run()`` polls each device in its own
    task until stopped, reconnecting and backing off per device.
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
        frame_ms: int = FRAME_MS,
        frame_idle_ms: int = FRAME_IDLE_MS,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__(spec.name, publisher, status_file=status_file, frame_ms=frame_ms,
                         frame_idle_ms=frame_idle_ms)
        self.spec = spec
        self.endpoint = endpoint or spec.endpoint
        plans = machine_plans(catalog, spec.name, endpoint=self.endpoint)
        if not plans:
            raise ConnectorConfigError(
                f"Modbus source {spec.name!r} has no machines with registers in the catalog; "
                f"add machines with 'source: {spec.name}' and a 'register' per tag"
            )
        timeout = spec.timeout_ms / 1000 if timeout_s is None else timeout_s
        self.links: dict[str, Link] = {}
        for plan in plans:
            if plan.endpoint not in self.links:
                self.links[plan.endpoint] = Link(plan.endpoint, framer=spec.framer,
                                                 timeout_s=timeout)
        self.devices = [ModbusDevice(plan, self.links[plan.endpoint]) for plan in plans]
        self.concurrency = spec.concurrency

    @property
    def polls(self) -> int:
        """Device polls made (attempted), over all devices."""
        return sum(d.polls for d in self.devices)

    @property
    def reads(self) -> int:
        """Read requests the devices answered with data."""
        return sum(d.reads for d in self.devices)

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        tasks = [asyncio.create_task(self._poll_loop(d, slots), name=f"{self.name}-{d.name}")
                 for d in self.devices]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_loop(self, device: ModbusDevice, slots: asyncio.Semaphore) -> None:
        interval = device.plan.poll_ms / 1000
        next_tick = time.monotonic()
        while self.running:
            await self.wait_unblocked()  # a full spool with policy block: stop reading
            async with slots:
                await device.poll(self)
            self.connected = any(link.connected for link in self.links.values())
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay < 0:  # overran the period: skip ticks rather than burst to catch up
                next_tick, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)

    async def cleanup(self) -> None:
        for link in self.links.values():
            link.close()

    # -- the devices' reporter ---------------------------------------------------------------
    def report_values(self, ts: int, values: list[TagValue]) -> None:
        for v in values:
            if v.text is not None:
                self.emit(v.path, ts, None, Quality.GOOD, text=v.text)
            elif v.good:
                self.emit(v.path, ts, v.value, Quality.GOOD)
            else:
                self.emit(v.path, ts, None, Quality.BAD, status=v.status)

    def report_error(self, message: str, *, loud: bool) -> None:
        if loud:
            logger.warning("%s", message)
        else:
            logger.debug("%s", message)
        self.record_error(message)

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc.update(devices=len(self.devices), devices_down=sum(d.down for d in self.devices),
                   polls=self.polls, reads=self.reads)
        return doc
