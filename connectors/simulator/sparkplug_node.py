"""A simulated Sparkplug B edge node (Eclipse Sparkplug 3.0) on a real MQTT broker.

It behaves as an edge node must: the MQTT will is its NDEATH with the session's bdSeq;
on every connect it publishes NBIRTH then a DBIRTH per device (names, aliases, datatypes,
engineering units, current values); data goes out as DDATA by alias with ``seq`` counting
0-255 over the session; an NCMD ``Node Control/Rebirth`` makes it publish its births
again; after a lost connection paho reconnects and the node starts a new session (bdSeq+1).
With ``primary_host`` set it waits for that host's retained ``STATE`` to say online before
it births, goes quiet while the host is offline and births again when it returns. DCMD
metrics (by alias or name) are handed to ``on_command``, so a write can reach the machine.
Test hooks: :meth:`drop` (lose the connection without a DISCONNECT, so the broker sends
the will) and :meth:`skip_seq` (lose messages).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt_poll import mqtt_client
from schemas.events import now_ms
from schemas.mqtt import parse_broker
from schemas.sparkplug import (
    BDSEQ_METRIC,
    NAMESPACE,
    REBIRTH_METRIC,
    DataType,
    Payload,
    build_payload,
    decode_payload,
    metric_value,
    new_metric,
    state_topic,
)

__all__ = ["CommandHandler", "DeviceMetric", "EdgeNode"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceMetric:
    """One metric of a device: its Sparkplug name, datatype, unit and the key of its value."""

    name: str
    datatype: DataType
    key: str  # what the caller's values dict calls it
    unit: str = ""


# (device, metric key, value) of one DCMD metric; called on paho's network thread
CommandHandler = Callable[[str, str, float], None]


class EdgeNode:
    """One edge node with devices. Thread-safe: ``publish`` from any thread.

    Lifecycle: construct, ``start()`` (connects in the background and births on every
    connect, or when ``primary_host`` comes online), ``publish(device, values)`` ...,
    ``stop()`` (NDEATH, then disconnect).
    """

    def __init__(self, endpoint: str, group: str, node: str,
                 devices: dict[str, list[DeviceMetric]], *, bd_seq: int = 0,
                 primary_host: str | None = None,
                 on_command: CommandHandler | None = None) -> None:
        self.group, self.node, self.devices = group, node, devices
        self.primary_host = primary_host
        self.on_command = on_command
        self.host_online = primary_host is None
        self.broker = parse_broker(endpoint)
        self.bd_seq = bd_seq - 1  # incremented before every connect
        self.seq = 0
        self.aliases: dict[tuple[str, str], int] = {}
        for device, metrics in devices.items():
            for m in metrics:
                self.aliases[(device, m.key)] = len(self.aliases) + 1
        self.last: dict[str, dict[str, Any]] = {d: {} for d in devices}
        # (device, alias or name) -> metric: what a DCMD may name
        self._metric: dict[tuple[str, int | str], DeviceMetric] = {}
        for device, metrics in devices.items():
            for m in metrics:
                self._metric[(device, m.name)] = self._metric[
                    (device, self.aliases[(device, m.key)])] = m
        self.counts = {"births": 0, "rebirth_requests": 0, "connects": 0, "ddata": 0,
                       "commands": 0}
        self._lock = threading.RLock()
        self.online = False
        self.client = mqtt_client(f"sim-{node}-{uuid.uuid4().hex[:6]}")
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._arm_will()

    def _topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device else ""
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}{tail}"

    def _arm_will(self) -> None:
        """A new session: the next bdSeq, and the NDEATH carrying it as the will."""
        self.bd_seq = (self.bd_seq + 1) % 256
        self.client.will_set(self._topic("NDEATH"), self._ndeath(), qos=1)

    def _ndeath(self) -> bytes:
        return build_payload([new_metric(BDSEQ_METRIC, None, DataType.Int64, self.bd_seq)],
                             timestamp=now_ms(), seq=None)

    def _next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    # -- paho callbacks ----------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: ReasonCode,
                    _p: Any) -> None:
        if rc.is_failure:
            logger.warning("edge node %s: broker refused the connection: %s", self.node, rc)
            return
        self.counts["connects"] += 1
        topics = [(self._topic("NCMD"), 1), (self._topic("DCMD", "+"), 1)]
        if self.primary_host is not None:
            topics.append((state_topic(self.primary_host), 1))  # retained: arrives at once
        client.subscribe(topics)
        if self.host_online:
            self.birth()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: ReasonCode,
                       _p: Any) -> None:
        with self._lock:
            self.online = False
            self._arm_will()  # paho reconnects with it: a new session
        logger.info("edge node %s disconnected (%s)", self.node, rc)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if self.primary_host is not None and msg.topic == state_topic(self.primary_host):
            self._on_state(bytes(msg.payload))
            return
        try:
            payload = decode_payload(bytes(msg.payload))
        except Exception:
            logger.warning("edge node %s: unreadable command on %s", self.node, msg.topic)
            return
        if msg.topic.startswith(self._topic("DCMD") + "/"):
            self._on_dcmd(msg.topic.rsplit("/", 1)[1], payload)
        elif any(m.name == REBIRTH_METRIC and m.boolean_value for m in payload.metrics):
            self.counts["rebirth_requests"] += 1
            logger.info("edge node %s: rebirth requested", self.node)
            if self.host_online:
                self.birth()

    def _on_state(self, raw: bytes) -> None:
        """The primary host's STATE: birth when it comes online, go quiet when it leaves."""
        try:
            online = json.loads(raw)["online"] is True
        except (ValueError, KeyError, TypeError):
            logger.warning("edge node %s: unreadable STATE of host %s: %r", self.node,
                           self.primary_host, raw[:100])
            return
        with self._lock:
            was, self.host_online = self.host_online, online
            if online and not was:
                logger.info("edge node %s: primary host %s is online", self.node,
                            self.primary_host)
                self.birth()
            elif not online:
                self.online = False  # data waits for the host's return (then a birth)
                if was:
                    logger.info("edge node %s: primary host %s went offline", self.node,
                                self.primary_host)

    def _on_dcmd(self, device: str, payload: Payload) -> None:
        """Each metric of a DCMD, found by alias or name, goes to ``on_command``."""
        for m in payload.metrics:
            ref: int | str = m.alias if m.HasField("alias") else m.name
            spec = self._metric.get((device, ref))
            if spec is None:
                logger.warning("edge node %s: DCMD for %s names unknown metric %r", self.node,
                               device, ref)
                continue
            value = metric_value(m, spec.datatype)
            if value.value is None:
                logger.warning("edge node %s: DCMD %s/%s has no usable value (%s)", self.node,
                               device, spec.name, value.problem or "text")
                continue
            self.counts["commands"] += 1
            logger.info("edge node %s: DCMD %s/%s = %g", self.node, device, spec.name,
                        value.value)
            if self.on_command is not None:
                self.on_command(device, spec.key, value.value)

    # -- what the node publishes -------------------------------------------------------------
    def birth(self) -> None:
        """NBIRTH (seq 0) and a DBIRTH per device, with the last values."""
        with self._lock:
            self.seq = 0
            ts = now_ms()
            node_metrics = [new_metric(BDSEQ_METRIC, None, DataType.Int64, self.bd_seq),
                            new_metric(REBIRTH_METRIC, None, DataType.Boolean, False)]
            self.client.publish(self._topic("NBIRTH"), build_payload(
                node_metrics, timestamp=ts, seq=self._next_seq()), qos=0)
            for device, metrics in self.devices.items():
                values = self.last[device]
                ms = [new_metric(m.name, self.aliases[(device, m.key)], m.datatype,
                                 values.get(m.key), timestamp=ts,
                                 properties={"engUnit": m.unit} if m.unit else None)
                      for m in metrics]
                self.client.publish(self._topic("DBIRTH", device), build_payload(
                    ms, timestamp=ts, seq=self._next_seq()), qos=0)
            self.online = True
            self.counts["births"] += 1

    def publish(self, device: str, values: dict[str, Any], ts: int | None = None) -> None:
        """DDATA by alias for the metrics of ``device`` present in ``values``."""
        with self._lock:
            self.last[device].update(values)
            if not self.online:
                return
            ts = now_ms() if ts is None else ts
            metrics: list[Payload.Metric] = [
                new_metric(None, self.aliases[(device, m.key)], m.datatype, values[m.key],
                           timestamp=ts)
                for m in self.devices[device] if m.key in values]
            self.client.publish(self._topic("DDATA", device), build_payload(
                metrics, timestamp=ts, seq=self._next_seq()), qos=0)
            self.counts["ddata"] += 1

    def skip_seq(self, n: int = 1) -> None:
        """Lose ``n`` messages: the next one carries a seq the host did not expect."""
        with self._lock:
            for _ in range(n):
                self._next_seq()

    def send(self, kind: str, device: str | None, metrics: list[Payload.Metric],
             *, seq: int | None = -1, raw: bytes | None = None) -> None:
        """Publish any message (tests: data by an unknown alias, malformed payloads)."""
        with self._lock:
            if raw is None:
                raw = build_payload(metrics, timestamp=now_ms(),
                                    seq=self._next_seq() if seq == -1 else seq)
            self.client.publish(self._topic(kind, device), raw, qos=0)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait_s: float = 0.0) -> None:
        """Connect in the background (births on connect); wait up to ``wait_s`` for it."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=5)
        self.client.loop_start()
        deadline = time.monotonic() + wait_s
        while not self.online and time.monotonic() < deadline:
            time.sleep(0.02)

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT: the broker publishes the will."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # plain TCP (the simulator uses no TLS)
            # end the TCP connection but leave the descriptor to paho: it reads the end,
            # closes the socket itself, reconnects and births a new session (closing it
            # here, while paho's loop thread still waits on it, would let another socket
            # take the number under paho)
            with contextlib.suppress(OSError):  # already gone: paho reconnects anyway
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """A clean end: NDEATH first (a clean DISCONNECT discards the will), then go."""
        with self._lock:
            if self.online:
                self.client.publish(self._topic("NDEATH"), self._ndeath(), qos=1)\
                    .wait_for_publish(2)
            self.online = False
        self.client.disconnect()
        self.client.loop_stop()
