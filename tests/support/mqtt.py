"""MQTT test helpers: a catalog with an MQTT source, a connector run in a thread against
real Kafka, a paho publisher, and readers of the readings and dead-letter topics."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho

from connectors.deadletter import DeadLetterPublisher
from connectors.mqtt import MqttSource
from connectors.mqtt_poll import mqtt_client
from connectors.publisher import ReadingPublisher
from schemas.catalog import Catalog
from schemas.events import DeadLetter
from schemas.mqtt import parse_broker
from schemas.readings import Reading, ReadingFrame
from schemas.topics import Topics
from tests.support import kafka
from tests.support.kafka import at_least

__all__ = ["MqttPublisher", "RunningSource", "consume", "letters_of", "mqtt_catalog", "readings_of"]

TAGS = ["temperature", "pressure", "state_text", "speed", "running"]


def mqtt_catalog(endpoint: str, mqtt: dict[str, Any],
                 machines: tuple[str, ...] = ("oven-01", "oven-02")) -> Catalog:
    """A plant with machines on one MQTT source (tags: TAGS; state_text is a text tag)."""
    return Catalog.model_validate({
        "enterprise": "acme", "site": "plant9",
        "sources": [{"name": "mqtt-src", "protocol": "mqtt", "endpoint": endpoint,
                     "mqtt": mqtt}],
        "machines": [{"name": m, "area": "baking", "line": "line1", "source": "mqtt-src",
                      "tags": [{"name": t, **({"kind": "text"} if t == "state_text" else {})}
                               for t in TAGS]} for m in machines],
    })


class RunningSource:
    """An MqttSource serving in its own thread and event loop, into real Kafka."""

    def __init__(self, catalog: Catalog, bootstrap: str, topics: Topics, *,
                 frame_ms: int = 100) -> None:
        self.publisher = ReadingPublisher(bootstrap, topics)
        self.letters = DeadLetterPublisher(bootstrap, topics)
        self.source = MqttSource(catalog, catalog.source("mqtt-src"), self.publisher,
                                 frame_ms=frame_ms, dead_letters=self.letters)
        self.status: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def go() -> None:
            self.status = await self.source.serve(self._stop)

        self._loop.run_until_complete(go())

    def __enter__(self) -> RunningSource:
        self._thread.start()
        self.wait(lambda: self.source.connected and self.source.connects > 0, 15)
        time.sleep(0.3)  # the SUBACK
        return self

    def wait(self, cond: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> dict[str, Any]:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            self.letters.close()
        return self.status

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MqttPublisher:
    """A paho client that publishes and waits for the broker's acknowledgement."""

    def __init__(self, endpoint: str, client_id: str | None = None, *,
                 will: tuple[str, bytes] | None = None) -> None:
        b = parse_broker(endpoint)
        self.client = mqtt_client(client_id or f"pub-{uuid.uuid4().hex[:8]}")
        self.received: list[paho.MQTTMessage] = []
        self._subscriptions: dict[str, int] = {}
        self.client.on_message = lambda _c, _u, m: self.received.append(m)
        self.client.on_connect = self._resubscribe
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.client.connect(b.host, b.port, keepalive=5)
        self.client.loop_start()
        self._wait_connected(endpoint)

    def _wait_connected(self, endpoint: str) -> None:
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.client.is_connected():
            raise AssertionError(f"test MQTT client could not connect to {endpoint} in 10 s")

    def _resubscribe(self, client: paho.Client, *_: object) -> None:
        # a reconnect starts a clean session: subscribe again (paho does not)
        for topic, qos in self._subscriptions.items():
            client.subscribe(topic, qos=qos)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now and again after any reconnect (a subscribe sent while the client
        is between connections would be lost, and with it a retained message)."""
        self._subscriptions[topic] = qos
        if self.client.is_connected():
            self.client.subscribe(topic, qos=qos)

    def publish(self, topic: str, payload: bytes | str | float, qos: int = 1,
                retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10)

    def close(self, clean: bool = True) -> None:
        if clean:
            self.client.disconnect()
        self.client.loop_stop()


def consume(bootstrap: str, topic: str, *, count: int, timeout: float = 30.0,
            settle: float = 0.0) -> list[bytes]:
    """Message values on ``topic`` until ``count`` items arrived (readings for the
    readings topic, messages otherwise), then ``settle`` s more to catch extras."""
    until = at_least(count) if topic.endswith(".readings") else (lambda v: len(v) >= count)
    return kafka.consume(bootstrap, topic, until=until, timeout=timeout, settle=settle)


def readings_of(values: list[bytes]) -> list[Reading]:
    return [r for v in values for r in ReadingFrame.decode(v).readings()]


def letters_of(values: list[bytes]) -> list[DeadLetter]:
    return [DeadLetter.decode(v) for v in values]
