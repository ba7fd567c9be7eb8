"""The PLC handshake on real devices: signed commands through Kafka and the executor onto a
pymodbus server and an asyncua server, each with a PLC program that runs its own scan.

The PLC program does what a real one does with a strobe/ack pair: when it sees the strobe
up and its ack down, it latches the setpoint (takes it into its recipe) and raises the
ack; when it sees the strobe down, it drops the ack. It runs on its own scan cycle, so
its ack lags the executor by up to one scan, as a real PLC's does, and the oven's PLC
holds its ack up for at least ACK_HOLD_S (a pulse timer): a second command that comes
sooner finds the first one's ack still up, and must not take it for its own.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from asyncua import Server, ua
from asyncua.common.node import Node
from pymodbus.server import ModbusTcpServer

from millstream.stack.kafka import free_port
from schemas.catalog import load_catalog
from schemas.control import AuditRecord
from schemas.events import CommandResult
from schemas.topics import Topics
from tests.integration.modbus_servers import device, serve
from tests.integration.test_executor import (
    ExecutorThread,
    command,
    consume,
    keys_dir,
    produce,
)

pytestmark = pytest.mark.integration
__all__ = ["keys_dir"]  # the fixture, imported for these tests

SCAN_S = 0.3  # the PLC's scan cycle: its ack lags the strobe by up to this
ACK_HOLD_S = 1.5  # the oven's ack stays up at least this long
NS = "urn:millstream:test-plc"
HOLDING = 3  # the Modbus function code the PLC program's own memory access goes through

CATALOG = """\
enterprise: acme
site: plant9
sources:
  - {{name: plc, protocol: modbus, endpoint: "127.0.0.1:{modbus}", timeout_ms: 1000}}
  - {{name: panel, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:{opcua}/plc/",
      namespace: "{ns}"}}
machines:
  - name: oven-01
    area: bake
    line: line1
    source: plc
    unit_id: 1
    tags:
      # the PLC honours this handshake
      - {{name: temp_sp, kind: setpoint, min: 0, max: 300, register: {{table: holding,
          address: 0, type: float32}}, handshake: {{strobe: temp_strobe, ack: temp_ack,
          timeout_ms: 3000}}}}
      - {{name: temp_strobe, kind: state, register: {{table: holding, address: 2,
          type: uint16}}}}
      - {{name: temp_ack, kind: state, register: {{table: holding, address: 3, type: uint16}}}}
      # nothing in the PLC answers this one
      - {{name: fan_sp, kind: setpoint, min: 0, max: 100, register: {{table: holding,
          address: 4, type: float32}}, handshake: {{strobe: fan_strobe, ack: fan_ack,
          timeout_ms: 500}}}}
      - {{name: fan_strobe, kind: state, register: {{table: holding, address: 6,
          type: uint16}}}}
      - {{name: fan_ack, kind: state, register: {{table: holding, address: 7, type: uint16}}}}
      # an ack stuck at 1: the PLC never drops it
      - {{name: door_sp, kind: setpoint, min: 0, max: 1, register: {{table: holding,
          address: 8, type: uint16}}, handshake: {{strobe: door_strobe, ack: door_ack,
          timeout_ms: 500}}}}
      - {{name: door_strobe, kind: state, register: {{table: holding, address: 10,
          type: uint16}}}}
      - {{name: door_ack, kind: state, register: {{table: holding, address: 11,
          type: uint16}}}}
  - name: mixer-01
    area: bake
    line: line1
    source: panel
    tags:
      - {{name: speed_sp, kind: setpoint, min: 0, max: 500, node: "nsu={ns};s=mixer.speed_sp",
          handshake: {{strobe: speed_strobe, ack: speed_ack, timeout_ms: 3000}}}}
      - {{name: speed_strobe, kind: state, node: "nsu={ns};s=mixer.speed_strobe"}}
      - {{name: speed_ack, kind: state, node: "nsu={ns};s=mixer.speed_ack"}}
"""
OVEN, MIXER = "acme/plant9/bake/line1/oven-01", "acme/plant9/bake/line1/mixer-01"


@dataclass
class Plc:
    """Both PLCs' memory and programs on one event loop in a daemon thread. ``latched``:
    the setpoints each program took, in order; ``strobes``: every strobe value it saw."""

    modbus_port: int
    opcua_port: int
    latched: dict[str, list[float]] = field(default_factory=lambda: {"temp": [], "speed": []})
    strobes: dict[str, set[int]] = field(default_factory=lambda: {"door": set()})
    modbus: ModbusTcpServer | None = None
    opcua: Server | None = None
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.temp_ack_at = 0.0  # when the oven's program raised its ack
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> Plc:
        self.thread.start()
        # asyncua loads its standard address space: seconds, more on a loaded machine
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def registers(self, address: int, count: int) -> list[int]:
        assert self.modbus is not None
        values = asyncio.run_coroutine_threadsafe(
            self.modbus.async_getValues(1, HOLDING, address, count), self.loop).result(5)
        return [int(v) for v in values]

    def node_value(self, name: str) -> object:
        return asyncio.run_coroutine_threadsafe(self.nodes[name].read_value(),
                                                self.loop).result(5)

    async def _start(self) -> None:
        self.modbus = await serve([device(1, holding={11: 1})], self.modbus_port)  # door_ack 1
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.opcua_port}/plc/")
        idx = await server.register_namespace(NS)
        for name, variant in (("speed_sp", ua.Variant(120.0, ua.VariantType.Double)),
                              ("speed_strobe", ua.Variant(False, ua.VariantType.Boolean)),
                              ("speed_ack", ua.Variant(False, ua.VariantType.Boolean))):
            node = await server.nodes.objects.add_variable(
                ua.NodeId(ua.String(f"mixer.{name}"), ua.Int16(idx)), name, variant)
            await node.set_writable()
            self.nodes[name] = node
        await server.start()
        self.opcua = server
        self.tasks = [asyncio.create_task(self._scan(self._oven_program)),
                      asyncio.create_task(self._scan(self._mixer_program))]

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.modbus is not None:
            await self.modbus.shutdown()
        if self.opcua is not None:
            await self.opcua.stop()

    async def _scan(self, program: object) -> None:
        assert callable(program)
        while True:
            await program()
            await asyncio.sleep(SCAN_S)

    async def _oven_program(self) -> None:
        assert self.modbus is not None
        regs = await self.modbus.async_getValues(1, HOLDING, 0, 12)
        strobe, ack = regs[2], regs[3]
        if strobe and not ack:
            self.latched["temp"].append(struct.unpack(">f", struct.pack(">HH", *regs[0:2]))[0])
            await self.modbus.async_setValues(1, HOLDING, 3, [1])
            self.temp_ack_at = time.monotonic()
        elif not strobe and ack and time.monotonic() - self.temp_ack_at >= ACK_HOLD_S:
            await self.modbus.async_setValues(1, HOLDING, 3, [0])
        self.strobes["door"].add(regs[10])  # door: its ack stays 1, whatever happens

    async def _mixer_program(self) -> None:
        strobe = await self.nodes["speed_strobe"].read_value()
        ack = await self.nodes["speed_ack"].read_value()
        if strobe and not ack:
            self.latched["speed"].append(await self.nodes["speed_sp"].read_value())
            await self.nodes["speed_ack"].write_value(True)
        elif not strobe and ack:
            await self.nodes["speed_ack"].write_value(False)


def test_the_plc_handshake_on_real_devices(kafka_bootstrap: str, topics: Topics,
                                           keys_dir: Path, tmp_path: Path) -> None:
    """Acknowledged (twice in a row, so a stale ack from the first must not answer the
    second), never acknowledged, and an ack that never drops: only the first kind is
    applied; each result and audit record says what the PLC did."""
    with Plc(free_port(), free_port()) as plc:
        path = tmp_path / "plant.yaml"
        path.write_text(CATALOG.format(modbus=plc.modbus_port, opcua=plc.opcua_port, ns=NS))
        catalog = load_catalog(path)
        cmds = [command(f"{OVEN}/temp_sp", 180.0, OVEN, command_id="temp-1", keys=keys_dir),
                command(f"{OVEN}/temp_sp", 185.5, OVEN, command_id="temp-2", keys=keys_dir),
                command(f"{OVEN}/fan_sp", 40.0, OVEN, command_id="fan", keys=keys_dir),
                command(f"{OVEN}/door_sp", 1.0, OVEN, command_id="door", keys=keys_dir),
                command(f"{MIXER}/speed_sp", 240.0, MIXER, command_id="speed", keys=keys_dir)]
        produce(kafka_bootstrap, topics.commands, [(c.key(), c.encode()) for c in cmds])
        executor = ExecutorThread(catalog=catalog, bootstrap=kafka_bootstrap, topics=topics,
                                  group_id=f"executor-{topics.prefix}",
                                  trusted_keys_dir=keys_dir / "trusted")
        try:
            results = {r.command_id: r for r in (
                CommandResult.decode(v)
                for v in consume(kafka_bootstrap, topics.command_results, len(cmds)))}
            audits = {a.command_id: a for a in (
                AuditRecord.decode(v)
                for v in consume(kafka_bootstrap, topics.command_audit, len(cmds)))}
        finally:
            counters = executor.stop()

        # acknowledged: applied, and the PLC took each value, the second one too
        for cid, value in (("temp-1", 180.0), ("temp-2", 185.5), ("speed", 240.0)):
            assert (results[cid].status, results[cid].readback) == ("applied", value), cid
            assert "acknowledged by the PLC" in results[cid].detail
            assert audits[cid].verdict == "applied" and audits[cid].checks["handshake"] == "ok"
        assert plc.latched == {"temp": [180.0, 185.5], "speed": [240.0]}

        # never acknowledged: written and read back, but failed, with the reason
        fan = results["fan"]
        assert (fan.status, fan.readback) == ("failed", 40.0)
        assert f"{OVEN}/fan_ack stayed 0 for 500 ms" in fan.detail
        assert audits["fan"].verdict == "failed"
        assert audits["fan"].checks["handshake"].startswith(f"refused: no ack on {OVEN}/fan_ack")
        assert audits["fan"].checks["readback"] == "ok"

        # an ack that never drops cannot answer this command: failed, strobe never raised
        door = results["door"]
        assert door.status == "failed" and "still 1 from an earlier handshake" in door.detail
        assert audits["door"].checks["handshake"].startswith("refused")
        assert plc.strobes["door"] == {0}

        # every strobe is down again; the PLC dropped the acks it raised
        assert plc.registers(2, 2) == [0, 0] and plc.registers(6, 1) == [0]
        assert plc.node_value("speed_strobe") is False and plc.node_value("speed_ack") is False
        assert {k: counters[k] for k in ("received", "applied", "failed")} == {
            "received": 5, "applied": 3, "failed": 2}
