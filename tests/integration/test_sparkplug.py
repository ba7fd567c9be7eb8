"""Sparkplug B end to end: the simulator's edge node, a real Mosquitto, the MQTT connector
acting as primary host, and a real Kafka."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.simulator.sparkplug_node import DeviceMetric, EdgeNode
from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.readings import Quality, Reading
from schemas.sparkplug import DataType, new_metric
from schemas.topics import Topics
from tests.support.mqtt import (
    MqttPublisher,
    RunningSource,
    consume,
    letters_of,
    mqtt_catalog,
    readings_of,
)

pytestmark = pytest.mark.integration

PATH = "acme/plant9/baking/line1/oven-01"
METRICS = [DeviceMetric("Temperature", DataType.Double, "temperature", "degC"),
           DeviceMetric("Pressure", DataType.Float, "pressure", "bar"),
           DeviceMetric("Running", DataType.Boolean, "running"),
           DeviceMetric("State Text", DataType.String, "state_text")]


def catalog_for(endpoint: str, client_id: str, host_id: str | None = None) -> Any:
    return mqtt_catalog(endpoint, {"client_id": client_id, "sparkplug": {
        "group": "g1", "edge_nodes": ["edge-1"], "host_id": host_id, "rebirth_every_ms": 500}})


_NODES: list[EdgeNode] = []


@pytest.fixture(autouse=True)
def _stop_nodes() -> Iterator[None]:
    """A test that fails leaves no edge node behind to disturb the next one (same ids)."""
    yield
    while _NODES:
        _NODES.pop().stop()


def node_for(endpoint: str) -> EdgeNode:
    node = EdgeNode(endpoint, "g1", "edge-1", {"oven-01": METRICS})
    _NODES.append(node)
    node.last["oven-01"].update(temperature=20.0, pressure=1.0, running=True,
                                state_text="idle")
    return node


_BROKER: list[EmbeddedMosquitto] = []  # this module's broker, for the failure message


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMosquitto]:
    """This module's own broker, fresh: these tests count births and sequence numbers and
    read a retained STATE, which sessions left in a broker shared with the other MQTT
    tests could add to."""
    with EmbeddedMosquitto(tmp_path_factory.mktemp("mosquitto-spb")) as broker:
        _BROKER[:] = [broker]
        yield broker


def wait(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    log = _BROKER[0].log_path.read_text(errors="replace")[-2000:] if _BROKER else ""
    raise AssertionError(f"timed out after {timeout:g} s; the broker's log ends:\n{log}")


def by_tag(readings: list[Reading], tag: str) -> list[Reading]:
    return [r for r in readings if r.tag == f"{PATH}/{tag}"]


def test_birth_data_seq_gap_rebirth_bad_input_and_death(
        mosquitto: EmbeddedMosquitto, kafka_bootstrap: str, topics: Topics) -> None:
    catalog = catalog_for(mosquitto.endpoint, "t-spb-life")
    node = node_for(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        node.start(wait_s=10)  # NBIRTH + DBIRTH: 4 values
        for i in range(5):
            node.publish("oven-01", {"temperature": 100.0 + i})
        node.skip_seq(2)  # two messages lost
        node.publish("oven-01", {"temperature": 200.0})
        wait(lambda: node.counts["rebirth_requests"] == 1)
        wait(lambda: node.counts["births"] == 2)
        node.send("DDATA", "oven-01", [new_metric(None, 999, DataType.Double, 1.0)])
        node.send("DDATA", "oven-01", [], raw=b"\x0a\xff\xff\xff garbage")
        wait(lambda: node.counts["births"] == 3)  # the unknown alias asked for one too
        node.publish("oven-01", {"temperature": 300.0, "pressure": 2.5})
        wait(lambda: run.source.received >= 12)
        node.stop()  # NDEATH
        letters = letters_of(consume(kafka_bootstrap, topics.deadletter, count=2, settle=0.5))
        # births 3 x 4, data 5+1+2, seq-gap markers 4, NDEATH markers 4
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=28, settle=1.0))
        status = run.stop()
    temps = [r for r in by_tag(got, "temperature")]
    good = [r.value for r in temps if r.quality == Quality.GOOD]
    assert good == [20.0, 100.0, 101.0, 102.0, 103.0, 104.0, 200.0, 200.0, 200.0, 300.0]
    statuses = [r.status or "" for r in temps if r.quality == Quality.BAD]
    assert statuses[0] == "gap: Sparkplug seq of g1/edge-1 jumped from 6 to 9 (messages lost)"
    assert statuses[1] == "gap: NDEATH g1/edge-1 (bdSeq 0)"
    assert by_tag(got, "pressure")[-2].value == 2.5
    assert by_tag(got, "state_text")[0].text == "idle"
    assert {r.tag for r in got if r.status and "NDEATH" in r.status} == {
        f"{PATH}/{t}" for t in ("temperature", "pressure", "running", "state_text")}
    assert sorted(d.reason for d in letters) == ["sparkplug-malformed",
                                                 "sparkplug-unknown-alias"]
    assert status["sparkplug"]["seq_gaps"] == 1 and status["rebirths_requested"] == 2
    assert node.counts["rebirth_requests"] == 2
    assert len(got) == 28
    assert [r.seq for r in got] == list(range(1, len(got) + 1))


def test_a_node_that_reconnects(mosquitto: EmbeddedMosquitto, kafka_bootstrap: str,
                                topics: Topics) -> None:
    catalog = catalog_for(mosquitto.endpoint, "t-spb-reconnect")
    node = node_for(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        node.start(wait_s=10)
        node.publish("oven-01", {"temperature": 50.0})
        wait(lambda: run.source.received >= 3)  # NBIRTH, DBIRTH, DDATA
        node.drop()  # the broker sends the will: NDEATH with bdSeq 0
        wait(lambda: node.counts["connects"] == 2 and node.online)  # bdSeq 1 births
        node.publish("oven-01", {"temperature": 60.0})
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=4 + 1 + 4 + 4 + 1,
                                  settle=1.0))
        status = run.stop()
    node.stop()
    temps = [(r.value, r.status) for r in by_tag(got, "temperature")]
    assert temps == [(20.0, None), (50.0, None), (None, "gap: NDEATH g1/edge-1 (bdSeq 0)"),
                     (50.0, None), (60.0, None)]
    assert status["sparkplug"]["deaths"] == 1 and status["sparkplug"]["births"] == 4
    assert status["dead_lettered"] == 0


def test_data_before_birth_asks_rebirth_and_host_state(
        mosquitto: EmbeddedMosquitto, kafka_bootstrap: str, topics: Topics) -> None:
    """The node was born before the host listened: its data has no birth certificate. The
    host dead-letters it, asks for a rebirth, and then maps everything. As primary host
    it publishes its STATE retained (3.0 JSON)."""
    node = node_for(mosquitto.endpoint)
    node.start(wait_s=10)
    catalog = catalog_for(mosquitto.endpoint, "t-spb-early", host_id="mill-test")
    watcher = MqttPublisher(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        deadline = time.monotonic() + 15
        while node.counts["births"] < 2 and time.monotonic() < deadline:
            node.publish("oven-01", {"temperature": 70.0})  # a node keeps sending
            time.sleep(0.1)
        node.publish("oven-01", {"temperature": 71.0})
        letters = letters_of(consume(kafka_bootstrap, topics.deadletter, count=1, settle=0.5))
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=5, settle=0.5))
        watcher.subscribe("spBv1.0/STATE/mill-test")
        wait(lambda: len(watcher.received) >= 1)
        online = json.loads(watcher.received[-1].payload)
        run.stop()
    wait(lambda: len(watcher.received) >= 2)
    offline = json.loads(watcher.received[-1].payload)
    watcher.close()
    node.stop()
    assert letters and {d.reason for d in letters} == {"sparkplug-no-birth"}
    temps = [r.value for r in by_tag(got, "temperature")]
    # the rebirth's DBIRTH carries the node's value at that moment (its first 20.0, or 70.0
    # if a publish came first), then the data: nothing else, and the last change last
    assert temps[-1] == 71.0 and temps[:-1] and set(temps[:-1]) <= {20.0, 70.0}
    assert online["online"] is True and offline["online"] is False
    assert online["timestamp"] == offline["timestamp"]
