"""``millstream bench mqtt``: Sparkplug B DDATA through Mosquitto into one MQTT connector.

An edge node births one device of ``METRICS`` metrics and then sends DDATA messages that
each carry every metric by alias, through an embedded Mosquitto, as fast as paho sends.
Measured side by side in the same run: the connector (paho thread, Sparkplug decode, alias
lookup, readings framed and numbered; frames are counted, not sent to Kafka) and the
ceiling, a bare paho subscriber that only parses the protobuf.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from connectors.mqtt import MqttSource
from connectors.mqtt_poll import mqtt_client
from connectors.simulator.sparkplug_node import DeviceMetric, EdgeNode
from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.catalog import Catalog
from schemas.readings import ReadingFrame
from schemas.sparkplug import DataType, build_payload, decode_payload, new_metric

__all__ = ["METRICS", "run"]

METRICS = 100  # metrics per DDATA message
TARGET = 50_000


class _Counting:
    """A frame publisher that counts readings instead of sending them to Kafka."""

    def __init__(self) -> None:
        self.delivered = self.failed = self.frames = 0
        self.last_error: str | None = None

    def publish(self, frame: ReadingFrame) -> None:
        self.frames += 1
        self.delivered += len(frame)

    def poll(self, timeout: float = 0.0) -> None:
        return None

    def flush(self, timeout: float = 10.0) -> int:
        return 0

    def close(self) -> None:
        return None


def _catalog(endpoint: str) -> Catalog:
    return Catalog.model_validate({
        "enterprise": "bench", "site": "site",
        "sources": [{"name": "bench-mqtt", "protocol": "mqtt", "endpoint": endpoint,
                     "mqtt": {"client_id": "bench-connector", "qos": 0, "clean_start": True,
                              "sparkplug": {"group": "bench", "edge_nodes": ["edge"]}}}],
        "machines": [{"name": "dev", "area": "a", "line": "l", "source": "bench-mqtt",
                      "tags": [{"name": f"m{i:03d}"} for i in range(METRICS)]}],
    })


def _ddata(node: EdgeNode) -> dict[int, bytes]:
    """One DDATA payload per seq value, every metric by alias."""
    out = {}
    for seq in range(256):
        metrics = [new_metric(None, node.aliases[("dev", f"m{i:03d}")], DataType.Double,
                              float(seq + i)) for i in range(METRICS)]
        out[seq] = build_payload(metrics, timestamp=1_700_000_000_000 + seq, seq=seq)
    return out


def _blast(node: EdgeNode, payloads: dict[int, bytes], messages: int) -> None:
    for _ in range(messages):
        node.send("DDATA", "dev", [], raw=payloads[node._next_seq()])


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _connector(endpoint: str, node: EdgeNode, payloads: dict[int, bytes], messages: int,
               timeout: float) -> dict[str, Any]:
    catalog = _catalog(endpoint)
    pub = _Counting()
    source = MqttSource(catalog, catalog.source("bench-mqtt"), pub, frame_ms=50)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(source.serve(stop)))
    thread.start()
    try:
        _wait(lambda: source.connected, 20)
        time.sleep(0.3)
        node.birth()
        _wait(lambda: source.builder.produced >= METRICS, 20)
        base = source.builder.produced
        want = messages * METRICS
        t0 = time.perf_counter()
        _blast(node, payloads, messages)
        _wait(lambda: source.builder.produced - base >= want, timeout)
        elapsed = time.perf_counter() - t0
        got = source.builder.produced - base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    return {"readings": got, "seconds": round(elapsed, 3),
            "readings_per_s": round(got / elapsed), "dead_lettered": sum(source.dead.values()),
            "seq_gaps": source.sparkplug.counts["seq_gaps"] if source.sparkplug else None}


def _bare(endpoint: str, node: EdgeNode, payloads: dict[int, bytes], messages: int,
          timeout: float) -> dict[str, Any]:
    host, port = endpoint.removeprefix("mqtt://").split(":")
    count = [0]

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        count[0] += len(decode_payload(bytes(msg.payload)).metrics)

    client = mqtt_client("bench-bare")
    client.on_message = on_message
    client.connect(host, int(port))
    client.subscribe("spBv1.0/bench/DDATA/edge/+", qos=0)
    client.loop_start()
    try:
        time.sleep(0.5)
        t0 = time.perf_counter()
        _blast(node, payloads, messages)
        _wait(lambda: count[0] >= messages * METRICS, timeout)
        elapsed = time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()
    return {"readings": count[0], "seconds": round(elapsed, 3),
            "readings_per_s": round(count[0] / elapsed)}


def run(readings: int | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Measure; ``readings`` (default 500,000) is rounded up to whole messages."""
    messages = max(1, -(-(readings or 500_000) // METRICS))
    with tempfile.TemporaryDirectory(prefix="millstream-bench-mqtt-") as tmp, \
            EmbeddedMosquitto(Path(tmp) / "mosquitto") as broker:
        node = EdgeNode(broker.endpoint, "bench", "edge", {"dev": [
            DeviceMetric(f"m{i:03d}", DataType.Double, f"m{i:03d}") for i in range(METRICS)]})
        node.last["dev"].update({f"m{i:03d}": 0.0 for i in range(METRICS)})
        node.start(wait_s=20)
        try:
            payloads = _ddata(node)
            connector = _connector(broker.endpoint, node, payloads, messages, timeout)
            bare = _bare(broker.endpoint, node, payloads, messages, timeout)
        finally:
            node.stop()
    sent = messages * METRICS
    return {
        "benchmark": "mqtt",
        "mqtt_readings_per_s": connector["readings_per_s"],
        "baseline_bare_paho_decode_readings_per_s": bare["readings_per_s"],
        "target_readings_per_s": TARGET,
        "messages": messages,
        "metrics_per_message": METRICS,
        "readings_sent": sent,
        "lost": sent - connector["readings"],
        "connector": connector,
        "bare": bare,
    }
