"""An asyncua server whose tags change on a timer and which counts every change it made.

``CountingServer(port, n)`` serves ``n`` Double variables ``Line/t0000…`` in namespace
``urn:test:counting`` (string ids ``t0000``…) plus ``constant`` ones that never change
(``c0000``…). While ``start()``-ed it writes each changing tag a new value (1, 2, 3, …) every
``period_s``, spread over the period, with the source timestamp of the write, and records
what it wrote, so a test can prove that every change arrived. Stop it and start a new one
on the same port to play a server restart: values continue where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from asyncua import Server, ua

from tests.support.opcua_interop import NodeBatch, nid

__all__ = ["URI", "CountingServer"]

URI = "urn:test:counting"


class CountingServer:
    """Lifecycle: construct, ``await start()``, ``await stop()``; again on the same port."""

    def __init__(self, port: int, n: int, *, constant: int = 0, period_s: float = 0.2,
                 first: dict[str, float] | None = None) -> None:
        self.port, self.n, self.constant, self.period_s = port, n, constant, period_s
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/counting/"
        self.names = [f"t{i:04d}" for i in range(n)]
        self.constants = [f"c{i:04d}" for i in range(constant)]
        self.value = dict(first or {})  # the last value written per changing tag
        self.written: dict[str, list[float]] = {name: [] for name in self.names}
        self.server: Server | None = None
        self.ns = 0
        self._writer: asyncio.Task[None] | None = None

    def node(self, name: str) -> str:
        """The tag's node id as the catalog writes it."""
        return f"nsu={URI};s={name}"

    async def start(self, *, write: bool = True) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await server.register_namespace(URI)
        batch = NodeBatch(server)
        objects = ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder))
        line = batch.folder(objects, nid("Line", self.ns), "Line")
        for name in self.names:
            batch.variable(line, nid(name, self.ns), name, "Double", self.value.get(name, 0.0))
        for name in self.constants:
            batch.variable(line, nid(name, self.ns), name, "Double", 42.0)
        await batch.flush()
        await server.start()
        self.server = server
        if write:
            await self.start_writing()

    async def start_writing(self) -> None:
        """Change every tag once per period from now on."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())

    async def stop_writing(self) -> None:
        """No more changes; the server goes on serving."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def stop(self) -> None:
        await self.stop_writing()
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    @property
    def writes(self) -> int:
        return sum(len(v) for v in self.written.values())

    async def write(self, name: str, value: float) -> None:
        """One change, stamped now, recorded."""
        assert self.server is not None
        now = datetime.now(UTC)
        dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double),
                          SourceTimestamp=now, ServerTimestamp=now)  # type: ignore[arg-type]
        await self.server.write_attribute_value(nid(name, self.ns), dv)
        self.value[name] = value
        self.written[name].append(value)

    async def _write_loop(self) -> None:
        """Every tag once per period, in slices spread over the period."""
        slices = max(1, min(len(self.names), 10))
        per = -(-len(self.names) // slices)
        start = time.monotonic()
        tick = 0
        while True:
            part = self.names[(tick % slices) * per : (tick % slices + 1) * per]
            for name in part:
                await self.write(name, self.value.get(name, 0.0) + 1.0)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * self.period_s / slices - time.monotonic()))
