"""The simulator's Sparkplug B edge node, seen from a primary host on a real Mosquitto.

The shipped plant publishes compressor-02 from edge node plant1/utilities-gw with primary
host ``millstream``. The test plays that host with a bare paho client: it announces its
STATE, reads births and data, asks for a rebirth, writes a setpoint by DCMD, and restarts
the broker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from connectors.mqtt_poll import mqtt_client
from connectors.simulator import FaultPlan, PlantSimulator
from millstream.stack.kafka import free_port
from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.catalog import Catalog
from schemas.mqtt import parse_broker
from schemas.sparkplug import (
    BDSEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Payload,
    build_payload,
    decode_payload,
    metric_properties,
    new_metric,
    state_payload,
    state_topic,
)

pytestmark = pytest.mark.integration

NODE = "spBv1.0/plant1/{kind}/utilities-gw"
DEVICE = "compressor-02"
PATH = "acme/plant1/utilities/air/compressor-02"


class Host:
    """A primary host ``millstream``: STATE online on connect, and every message it gets."""

    def __init__(self, endpoint: str) -> None:
        self.broker = parse_broker(endpoint)
        self.got: list[tuple[str, Payload]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt_client("test-host")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, *_a: Any) -> None:
        client.subscribe("spBv1.0/plant1/#", qos=1)  # before STATE: the births follow it

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if "/STATE/" not in msg.topic:
            with self.lock:
                self.got.append((msg.topic, decode_payload(bytes(msg.payload))))

    def connect(self) -> None:
        self.subscribed.clear()
        self.client.connect(self.broker.host, self.broker.port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def state(self, online: bool) -> None:
        self.client.publish(state_topic("millstream"), state_payload(online, int(
            time.time() * 1000)), qos=1, retain=True).wait_for_publish(5)

    def command(self, kind: str, metrics: list[Payload.Metric], device: str = "") -> None:
        topic = NODE.format(kind=kind) + (f"/{device}" if device else "")
        self.client.publish(topic, build_payload(metrics, timestamp=int(time.time() * 1000),
                                                 seq=None), qos=0)

    def of(self, kind: str) -> list[Payload]:
        with self.lock:
            return [p for t, p in self.got if t.split("/")[2] == kind]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def until(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def bd_seq(p: Payload) -> int:
    return next(int(m.long_value) for m in p.metrics if m.name == BDSEQ_METRIC)


def values(p: Payload, aliases: dict[int, str]) -> dict[str, float]:
    return {aliases[m.alias]: m.double_value if m.HasField("double_value")
            else float(m.boolean_value) for m in p.metrics}


def test_edge_node_births_publishes_rebirths_takes_setpoints_and_survives_a_broker_restart(
        catalog: Catalog, tmp_path: Path) -> None:
    broker = EmbeddedMosquitto(tmp_path / "mqtt")
    broker.start()
    host = Host(broker.endpoint)
    host.connect()
    sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(),
                         faults=FaultPlan([]), mqtt_broker=broker.endpoint)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    try:
        on_loop(sim.start())
        assert sim.sparkplug is not None
        node = sim.sparkplug.nodes[0]
        until(lambda: node.counts["connects"] == 1)
        time.sleep(1.0)  # connected, but its primary host is not online: no birth, no data
        assert host.got == []
        host.state(True)
        nbirth = until(lambda: host.of("NBIRTH"))[0]
        dbirth = until(lambda: host.of("DBIRTH"))[0]
        assert (nbirth.seq, dbirth.seq) == (0, 1)
        assert {m.name for m in nbirth.metrics} == {BDSEQ_METRIC, REBIRTH_METRIC}
        first_session = bd_seq(nbirth)
        # the birth defines every tag of the machine: name, alias, datatype, unit, value
        born = {m.name: m for m in dbirth.metrics}
        tags = next(m for m in catalog.machines if m.name == DEVICE).tags
        assert set(born) == {t.name for t in tags}
        assert born["discharge_pressure"].datatype == DataType.Double
        assert metric_properties(born["discharge_pressure"])["engUnit"] == "bar"
        assert born["running"].datatype == DataType.Boolean and born["running"].boolean_value
        assert born["pressure_sp"].double_value == 7.5  # the catalog's default
        aliases = {m.alias: m.name for m in dbirth.metrics}
        assert len(aliases) == len(tags)
        # data by alias, seq counting on from the birth, values from the physics
        data = until(lambda: len(host.of("DDATA")) >= 10 and host.of("DDATA"))
        assert [p.seq for p in data[:10]] == list(range(2, 12))
        assert all(not m.name and m.HasField("timestamp") for p in data for m in p.metrics)
        pressure = [v["discharge_pressure"] for p in data
                    if "discharge_pressure" in (v := values(p, aliases))]
        assert len(pressure) >= 8 and all(6.5 < x < 8.5 for x in pressure)
        # a rebirth request: births again in the same session, seq from 0
        host.command("NCMD", [new_metric(REBIRTH_METRIC, None, DataType.Boolean, True)])
        rebirth = until(lambda: host.of("NBIRTH")[1:])[0]
        assert bd_seq(rebirth) == first_session and rebirth.seq == 0
        until(lambda: len(host.of("DBIRTH")) == 2)
        # a setpoint written by DCMD (by name) moves the physics and is reported back
        host.command("DCMD", [new_metric("pressure_sp", None, DataType.Double, 6.0)], DEVICE)
        until(lambda: sim.value(f"{PATH}/pressure_sp") == 6.0)
        sp_alias = next(a for a, n in aliases.items() if n == "pressure_sp")
        until(lambda: any(m.alias == sp_alias and m.double_value == 6.0
                          for p in host.of("DDATA") for m in p.metrics))
        until(lambda: sim.value(f"{PATH}/discharge_pressure") < 6.5, timeout=20)
        # a write to a measured tag is refused: the physics keeps its own value
        host.command("DCMD", [new_metric("discharge_temp", None, DataType.Double, 1.0)], DEVICE)
        time.sleep(0.5)
        assert sim.value(f"{PATH}/discharge_temp") > 50
        # the host leaves: the node goes quiet
        host.state(False)
        time.sleep(0.5)
        quiet_from = len(host.of("DDATA"))
        time.sleep(1.0)
        assert len(host.of("DDATA")) == quiet_from
        # the broker restarts: the node reconnects in a new session (bdSeq + 1) and births
        # again once its host is back
        host.close()
        broker.restart(down_s=1.0)
        host.connect()
        host.state(True)
        births = until(lambda: host.of("NBIRTH")[2:], timeout=20)
        assert bd_seq(births[0]) == (first_session + 1) % 256 and births[0].seq == 0
        until(lambda: len(host.of("DDATA")) > quiet_from + 3)
        assert node.counts["connects"] == 2
        # a clean stop says NDEATH with the session's bdSeq
        on_loop(sim.stop())
        death = until(lambda: host.of("NDEATH"))[0]
        assert bd_seq(death) == (first_session + 1) % 256
    finally:
        on_loop(sim.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        host.close()
        broker.stop()
