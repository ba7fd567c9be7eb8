"""MQTT source: plain topics mapped onto tags, and Sparkplug B edge nodes, via paho-mqtt.

paho's network thread receives messages and only queues them; ``run()`` on the event loop
decodes them in order (:mod:`connectors.mqtt_map` for plain topics,
:class:`~connectors.sparkplug.SparkplugHost` for Sparkplug B), emits readings, asks edge
nodes for rebirths (NCMD) and dead-letters what it cannot map, with the reason. paho
reconnects by itself; with ``clean_start: false`` the broker keeps the session and hands
over the QoS 1/2 messages that arrived while the connector was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import Counter, deque
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connectors.base import FRAME_IDLE_MS, FRAME_MS, FramePublisher, Source
from connectors.deadletter import DeadLetterSink, connector_letter
from connectors.exceptions import ConnectorConfigError
from connectors.mqtt_map import TopicMapper, resolve_tag
from connectors.mqtt_poll import mqtt_client
from connectors.sparkplug import SparkplugHost
from schemas.catalog import Catalog, SourceSpec
from schemas.events import now_ms
from schemas.exceptions import ContractError
from schemas.mqtt import MqttSpec, parse_broker
from schemas.sparkplug import (
    NAMESPACE,
    REBIRTH_METRIC,
    DataType,
    build_payload,
    decode_payload,
    new_metric,
    parse_topic,
    state_payload,
    state_topic,
)

__all__ = ["MqttSource"]

logger = logging.getLogger(__name__)

BATCH = 2000  # messages decoded before the event loop gets a turn (frames, status)


class MqttSource(Source):
    """Subscribes to one broker for the topic mappings and Sparkplug B nodes of a source.

    Lifecycle as :class:`~connectors.base.Source`; ``run()`` starts paho's network thread
    and decodes what it queues until stopped; ``cleanup()`` publishes the primary host's
    offline STATE (if it is one) and disconnects.
    """

    protocol = "mqtt"

    def __init__(self, catalog: Catalog, spec: SourceSpec, publisher: FramePublisher, *,
                 endpoint: str | None = None, status_file: Path | None = None,
                 frame_ms: int = FRAME_MS, dead_letters: DeadLetterSink | None = None,
                 frame_idle_ms: int = FRAME_IDLE_MS) -> None:
        super().__init__(spec.name, publisher, status_file=status_file, frame_ms=frame_ms,
                         frame_idle_ms=frame_idle_ms)
        if spec.mqtt is None:
            raise ConnectorConfigError(f"source {spec.name!r} has no 'mqtt:' section")
        self.spec: MqttSpec = spec.mqtt
        self.endpoint = endpoint or spec.endpoint
        try:
            self.broker = parse_broker(self.endpoint)
        except ValueError as exc:
            raise ConnectorConfigError(str(exc)) from exc
        self.dead_letters = dead_letters
        self.mapper = TopicMapper(catalog, spec)
        sp = self.spec.sparkplug
        self.sparkplug: SparkplugHost | None = None
        if sp is not None:
            def rule(group: str, node: str, device: str | None, metric: str) -> str | None:
                info = resolve_tag(catalog, spec.name, sp.tag_for(group, node, device, metric))
                return None if info is None else info.path

            self.sparkplug = SparkplugHost(rule, rebirth_every_ms=sp.rebirth_every_ms)
        self.filters = TopicMapper.filters(self.spec) + (sp.filters() if sp else [])
        self.received = 0
        self.dead = Counter[str]()
        self.rebirths_sent = 0
        self.connects = 0
        self.held = False  # disconnected on purpose: the spool is full under policy block
        self._inbox: deque[tuple[bytes, bytes]] = deque()
        self._signalled = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._state_ts = now_ms()

    # -- paho's thread -----------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        s = self.spec
        v5 = s.version == "5"
        client = mqtt_client(s.client_id or f"millstream-{self.name}",
                             protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                             clean_session=None if v5 else s.clean_start)
        client.reconnect_delay_set(min_delay=1, max_delay=4)
        client.max_inflight_messages_set(100)
        if self.broker.tls or s.tls is not None:
            tls = s.tls
            client.tls_set(ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                           certfile=str(tls.certificate) if tls and tls.certificate else None,
                           keyfile=str(tls.private_key) if tls and tls.private_key else None,
                           cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(bool(tls and tls.insecure))
        user = s.username or (os.environ.get(s.username_env) if s.username_env else None)
        if user is not None:
            client.username_pw_set(user, self._password())
        host_id = s.sparkplug.host_id if s.sparkplug else None
        if host_id:
            client.will_set(state_topic(host_id), state_payload(False, self._state_ts), qos=1,
                            retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _password(self) -> str | None:
        s = self.spec
        if s.password_env:
            value = os.environ.get(s.password_env)
            if value is None:
                raise ConnectorConfigError(f"source {self.name!r}: environment variable "
                                           f"{s.password_env} (password_env) is not set")
            return value
        if s.password_file:
            try:
                return s.password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConnectorConfigError(f"source {self.name!r}: cannot read password_file "
                                           f"{s.password_file}: {exc.strerror}") from exc
        return None

    def _on_connect(self, client: paho.Client, _ud: Any, flags: Any, rc: ReasonCode,
                    _props: Properties | None) -> None:
        if rc.is_failure:
            self.record_error(f"MQTT broker {self.endpoint} refused the connection: {rc}")
            logger.warning("%s", self.last_error)
            return
        self.connects += 1
        self.connected = True
        logger.info("connected to %s (session present: %s); subscribing %s", self.endpoint,
                    getattr(flags, "session_present", "?"), ", ".join(self.filters))
        client.subscribe([(f, int(self.spec.qos)) for f in self.filters])
        sp = self.spec.sparkplug
        if sp is not None and sp.host_id:
            client.publish(state_topic(sp.host_id), state_payload(True, self._state_ts),
                           qos=1, retain=True)

    def _on_disconnect(self, _c: paho.Client, _ud: Any, _flags: Any, rc: ReasonCode,
                       _props: Properties | None) -> None:
        self.connected = False
        if self.running and not self.held:
            self.record_error(f"lost MQTT broker {self.endpoint} ({rc}); reconnecting")
            logger.warning("%s", self.last_error)

    def _on_message(self, _c: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        # the raw topic: msg.topic raises on a topic that is not UTF-8
        self._inbox.append((msg._topic, bytes(msg.payload)))
        if not self._signalled and self._loop is not None and self._wake is not None:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the event loop --------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        client = self._client = self._make_client()
        self._connect(client)
        client.loop_start()
        while self.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            self._wake.clear()
            self._signalled = False
            await self._drain()
            self._follow_block(client)

    def _connect(self, client: paho.Client) -> None:
        """Ask paho's loop to connect (and reconnect) to the broker, with our session."""
        props = None
        if self.spec.version == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.spec.clean_start else \
                self.spec.session_expiry_s
        client.connect_async(self.broker.host, self.broker.port, self.spec.keepalive_s,
                             clean_start=self.spec.clean_start if self.spec.version == "5"
                             else paho.MQTT_CLEAN_START_FIRST_ONLY, properties=props)

    def _follow_block(self, client: paho.Client) -> None:
        """A full spool under policy block: leave the broker, which keeps this persistent
        session's QoS 1/2 messages queued (and, with a primary host, edge nodes hold their
        data), and come back once the spool takes frames again."""
        if self.blocked and not self.held:
            self.held = True
            logger.warning("the spool is full: leaving MQTT broker %s until it drains; the "
                           "broker queues this session's messages", self.endpoint)
            client.disconnect()
        elif self.held and not self.blocked:
            self.held = False
            logger.info("the spool drains again: back to MQTT broker %s", self.endpoint)
            client.loop_stop()  # the loop ended with the disconnect: start it over
            self._connect(client)
            client.loop_start()

    async def _drain(self) -> None:
        handled = 0
        while self._inbox:
            raw_topic, payload = self._inbox.popleft()
            self.handle(raw_topic, payload, now_ms())
            handled += 1
            if handled % BATCH == 0:
                await asyncio.sleep(0)
        poll = getattr(self.dead_letters, "poll", None)
        if poll is not None:
            poll(0)

    def handle(self, raw_topic: bytes, payload: bytes, now: int) -> None:
        """Decode one message into readings, or dead-letter it; never raises."""
        self.received += 1
        topic = raw_topic.decode("utf-8", "backslashreplace")
        try:
            try:
                raw_topic.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ContractError("topic-not-utf8", f"the topic {topic!r} is not UTF-8 "
                                    f"({exc}); MQTT topics must be UTF-8") from exc
            if len(payload) > self.spec.max_payload_bytes:
                raise ContractError("payload-too-large", (
                    f"payload of {len(payload):,} bytes on {topic!r} is over max_payload_bytes "
                    f"({self.spec.max_payload_bytes:,})"))
            if self.sparkplug is not None and topic.startswith(NAMESPACE + "/"):
                self._sparkplug(topic, payload, now)
            else:
                r = self.mapper.decode(topic, payload, now)
                self.emit(r.tag, r.ts, r.value, r.quality, status=r.status, text=r.text)
        except ContractError as exc:
            self._dead_letter(exc.reason, exc.detail, topic, payload)
        except Exception as exc:  # a bug must not stop the plant's data: keep it, say so
            logger.exception("cannot handle a message on %r", topic)
            self._dead_letter("connector-error", f"{type(exc).__name__}: {exc}", topic, payload)

    def _sparkplug(self, topic: str, payload: bytes, now: int) -> None:
        assert self.sparkplug is not None
        t = parse_topic(topic)
        if t is None:
            return  # a primary host's STATE: not plant data
        out = self.sparkplug.handle(t, decode_payload(payload), now)
        for e in out.emits:
            self.emit(e.tag, e.ts, e.value, e.quality, status=e.status, text=e.text)
        for p in out.problems:
            self._dead_letter(p.reason, p.detail, topic, payload)
        if out.rebirth and self._client is not None:
            ncmd = f"{NAMESPACE}/{t.group}/NCMD/{t.edge_node}"
            self._client.publish(ncmd, build_payload(
                [new_metric(REBIRTH_METRIC, None, DataType.Boolean, True)], timestamp=now,
                seq=None), qos=0)
            self.rebirths_sent += 1
            logger.info("asked %s for a rebirth", t.node_key)

    def _dead_letter(self, reason: str, detail: str, topic: str, payload: bytes) -> None:
        self.dead[reason] += 1
        n = sum(self.dead.values())
        if n <= 20 or n % 1000 == 0:
            logger.warning("dead letter #%d (%s): %s", n, reason, detail)
        if self.dead_letters is not None:
            self.dead_letters.dead_letter(connector_letter(
                self.name, self.epoch, n, reason=reason, detail=detail, topic=topic,
                payload=payload))

    async def cleanup(self) -> None:
        client = self._client
        if client is None:
            return
        sp = self.spec.sparkplug
        if sp is not None and sp.host_id and client.is_connected():
            info = client.publish(state_topic(sp.host_id), state_payload(False, self._state_ts),
                                  qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        await self._drain()
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc.update(received=self.received, dead_lettered=sum(self.dead.values()),
                   dead_letter_reasons=dict(self.dead), connects=self.connects,
                   rebirths_requested=self.rebirths_sent)
        if self.sparkplug is not None:
            doc["sparkplug"] = dict(self.sparkplug.counts)
        return doc
