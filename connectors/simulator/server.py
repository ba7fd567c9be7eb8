"""The plant simulator: the physics of :mod:`plant` served over OPC-UA and Modbus TCP, and
published by Sparkplug B edge nodes through an MQTT broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime
from types import TracebackType

from connectors.simulator.exceptions import PortInUseError
from connectors.simulator.faults import Fault, FaultPlan
from connectors.simulator.modbus_server import ModbusSide
from connectors.simulator.opcua_server import OpcUaSide
from connectors.simulator.plant import Plant
from connectors.simulator.sparkplug_side import SparkplugSide, sparkplug_sources
from schemas.catalog import Catalog
from schemas.exceptions import CatalogError

__all__ = ["PlantSimulator", "run_simulator"]

logger = logging.getLogger(__name__)


def _check_port(protocol: str, port: int) -> None:
    """Fail fast, before the slow OPC-UA setup, when a port is taken (the servers still
    report a port lost to a race in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(protocol, port, exc.strerror or str(exc)) from exc


class PlantSimulator:
    """Simulated machines behind an OPC-UA server and a Modbus TCP server on 127.0.0.1,
    and Sparkplug B edge nodes publishing through the MQTT broker ``mqtt_broker``.

    Lifecycle: construct, ``await start()`` (both servers listen, the edge nodes connect,
    the physics ticks every ``tick_s``), ..., ``await stop()``; or ``async with
    PlantSimulator(...) as sim``. Client writes to setpoint tags (OPC-UA, Modbus, or a
    Sparkplug DCMD) change the physics on the next tick. ``await force(tag, value)`` holds
    a tag at a value (a test, a what-if), served at once. ``mqtt_broker=None``: the machines
    of Sparkplug sources are simulated but not published.
    ``faults=None`` means ``FaultPlan.random(catalog, seed)``; ``FaultPlan([])`` means none.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        opcua_port: int,
        modbus_port: int,
        seed: int = 7,
        faults: FaultPlan | None = None,
        tick_s: float = 0.1,
        mqtt_broker: str | None = None,
    ) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be positive, got {tick_s}")
        self.catalog = catalog
        self.tick_s = tick_s
        self.plant = Plant(catalog, seed, faults)
        self._opcua = OpcUaSide(catalog, opcua_port)
        self._modbus = ModbusSide(catalog, modbus_port)
        self.sparkplug = (SparkplugSide(catalog, mqtt_broker) if mqtt_broker is not None
                          else None)
        if mqtt_broker is None and sparkplug_sources(catalog):
            logger.info("no MQTT broker given: the machines of %s are simulated, not published",
                        ", ".join(s.name for s in sparkplug_sources(catalog)))
        self._opcua_port = opcua_port
        self._modbus_port = modbus_port
        self._seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def opcua_endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self._opcua_port}/millstream/"

    @property
    def modbus_endpoint(self) -> str:
        return f"127.0.0.1:{self._modbus_port}"

    @property
    def faults(self) -> FaultPlan:
        return self.plant.plan

    def value(self, tag_path: str) -> float:
        """The current simulated value of a tag (full ISA-95 path, or ``machine/tag``)."""
        return self.plant.value(tag_path)

    def active_faults(self) -> list[Fault]:
        return self.plant.active_faults()

    async def force(self, tag_path: str, value: float | None) -> int:
        """Hold a tag at ``value`` (``None``: release it to the physics) and serve the new
        value at once over OPC-UA and Modbus, not at the next tick. Returns its source
        timestamp (Unix ms): when the change happened at the simulator."""
        now = datetime.now(UTC)
        current = self.plant.force(tag_path, value)
        path = self.catalog.resolve(tag_path)
        await self._opcua.publish_one(path, current, now)
        self._modbus.publish_one(path, current)
        return int(now.timestamp() * 1000)

    async def start(self) -> None:
        _check_port("OPC-UA", self._opcua_port)
        _check_port("Modbus", self._modbus_port)
        await self._opcua.start(self.plant.values)
        try:
            await self._modbus.start(self.plant.values)
        except BaseException:
            await self._opcua.stop()
            raise
        if self.sparkplug is not None:
            self.sparkplug.start(self.plant.values)
        self._seen = self._client_setpoints()
        self._task = asyncio.create_task(self._run(), name="plant-simulator")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sparkplug is not None:
            await asyncio.to_thread(self.sparkplug.stop)
        await self._modbus.stop()
        await self._opcua.stop()

    async def wait(self) -> None:
        """Until the tick loop ends: never, unless it fails (then its error is raised)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> PlantSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _client_setpoints(self) -> dict[str, float]:
        return {**self._opcua.setpoints(), **self._modbus.setpoints()}

    async def tick(self) -> None:
        """One step: take client setpoint writes, advance the physics, publish the values."""
        for path, v in self._client_setpoints().items():
            if self._seen.get(path) != v:
                logger.info("setpoint %s written by a client: %g", path, v)
                self.plant.set_setpoint(path, v)
                self._seen[path] = v
        if self.sparkplug is not None:
            self._take_commands(self.sparkplug)
        values = self.plant.step(self.tick_s)
        now = datetime.now(UTC)
        await self._opcua.publish(values, now)
        self._modbus.publish(values)
        if self.sparkplug is not None:
            self.sparkplug.publish(values, int(now.timestamp() * 1000))

    def _take_commands(self, side: SparkplugSide) -> None:
        """Setpoints written by a Sparkplug DCMD; a write to any other tag is refused."""
        for path, v in side.commands():
            try:
                self.plant.set_setpoint(path, v)
            except CatalogError as exc:
                logger.warning("Sparkplug DCMD refused: %s", exc)
                continue
            logger.info("setpoint %s written by a Sparkplug DCMD: %g", path, v)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.tick_s
            delay = due - loop.time()
            if delay < -1.0:  # fell far behind (a paused process): skip, don't burst
                logger.warning("simulator tick late by %.1f s; skipping ahead", -delay)
                due = loop.time()
            await asyncio.sleep(max(0.0, delay))
            await self.tick()


async def run_simulator(
    catalog: Catalog,
    *,
    opcua_port: int,
    modbus_port: int,
    seed: int,
    faults: FaultPlan | None,
    stop: asyncio.Event,
    mqtt_broker: str | None = None,
) -> None:
    """Serve the simulated plant until ``stop`` is set; faults are logged as they start/end."""
    sim = PlantSimulator(
        catalog, opcua_port=opcua_port, modbus_port=modbus_port, seed=seed, faults=faults,
        mqtt_broker=mqtt_broker,
    )
    async with sim:
        plan = sim.faults.faults
        logger.info(
            "plant simulator up: %s and modbus %s, seed %d, %d fault(s) planned%s",
            sim.opcua_endpoint, sim.modbus_endpoint, seed, len(plan),
            f" (first: {plan[0]})" if plan else "",
        )
        stopped = asyncio.create_task(stop.wait())
        running = asyncio.create_task(sim.wait())
        try:
            done, _ = await asyncio.wait({stopped, running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            running.cancel()
        if running in done:
            running.result()  # the tick loop failed: raise its error
    logger.info("plant simulator stopped")
