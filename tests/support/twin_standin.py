"""A stand-in for the alarms stage while it is not part of this millstream (and, on
request, for the twin).

It reads the real pipeline's topics (anomalies; with ``twin=True`` also reading frames and
command results) and writes real Kafka messages in the contracts the dashboard reads:
``millstream.alarms.v1`` episodes on ``<prefix>.alarms`` and, with ``twin=True``,
``millstream.twin.v1`` records on ``<prefix>.twin`` (compacted, keyed by machine path). Its
rules are deliberately simple and are not the real stages' logic: an alarm (severity high)
on a machine's first anomaly, kept active; a machine's state from its ``running``/``fault``
tags. The dashboard's browser test runs it with ``twin=False``: the stream workers publish
the real twin (which relays these alarms); once the alarms stage runs in the pipeline the
test uses its alarms instead.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.catalog import Catalog
from schemas.events import Anomaly, CommandResult, now_ms
from schemas.exceptions import ContractError
from schemas.readings import ReadingFrame
from schemas.topics import Topics

__all__ = ["TwinStandIn", "alarm_record", "create_twin_topics", "twin_record"]

QUALITY = ("GOOD", "UNCERTAIN", "BAD")
# what the twin keeps of an alarm episode (its contract's alarm entries)
_TWIN_ALARM = ("alarm_id", "severity", "state", "message", "started_at", "tags", "active",
               "acknowledged", "version")


def create_twin_topics(bootstrap: str, prefix: str) -> tuple[str, str]:
    """``<prefix>.twin`` (compacted) and ``<prefix>.alarms``, as those stages create them,
    where missing (``ensure_topics`` creates the twin topic with millstream's others)."""
    twin, alarms = f"{prefix}.twin", f"{prefix}.alarms"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(twin, 1, 1, config={"cleanup.policy": "compact"}), NewTopic(alarms, 1, 1)]
    missing = [t for t in new if t.topic not in existing]
    for f in (admin.create_topics(missing) if missing else {}).values():
        f.result(timeout=30)
    return twin, alarms


def twin_record(catalog: Catalog, machine: str, tags: dict[str, dict[str, Any]], *,
                state: str = "running", alarms: list[dict[str, Any]] | None = None,
                last_command: dict[str, Any] | None = None,
                oee: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``millstream.twin.v1`` value for ``machine`` (a catalog name) with ``tags``
    (tag name -> {"value", "quality", "ts"}); unit and range come from the catalog."""
    spec = next(m for m in catalog.machines if m.name == machine)
    now = now_ms()
    return {
        "schema": "millstream.twin.v1", "machine": catalog.machine_path(spec),
        "site": catalog.site, "area": spec.area, "line": spec.line, "name": spec.name,
        "state": state, "state_since": now, "updated": now,
        "tags": {t.name: {"path": catalog.tag_path(spec, t), "value": v.get("value"),
                          "text": v.get("text"), "unit": t.unit,
                          "quality": v.get("quality", "GOOD"), "ts": v.get("ts", now),
                          "low": t.low, "high": t.high}
                 for t in spec.tags if (v := tags.get(t.name)) is not None},
        "alarms": alarms or [], "last_command": last_command, "oee": oee, "energy": None,
    }


def alarm_record(asset: str, tags: list[str], message: str, *, severity: str = "high",
                 state: str = "active", version: int = 1, alarm_id: str | None = None,
                 started_at: int | None = None, score: float = 2.0) -> dict[str, Any]:
    """A ``millstream.alarms.v1`` value (every field of the alarms stage's contract)."""
    now = now_ms()
    active = state in ("active", "acknowledged")
    return {
        "schema": "millstream.alarms.v1", "alarm_id": alarm_id or uuid.uuid4().hex,
        "asset": asset, "tags": tags, "severity": severity, "state": state,
        "message": message, "started_at": started_at or now, "ended_at": None,
        "updated_at": now, "version": version, "active": active,
        "acknowledged": state in ("acknowledged", "closed"), "action": "raised",
        "actor": "streams", "note": "", "score": score, "detectors": ["stand-in"],
        "shelved_until": None,
    }


class TwinStandIn(threading.Thread):
    """Lifecycle: construct, :meth:`start`, :meth:`stop`. Raises an alarm on a machine's
    first anomaly; with ``twin`` publishes each changed machine's twin every ``period_s``."""

    def __init__(self, bootstrap: str, topics: Topics, catalog: Catalog,
                 period_s: float = 0.5, *, twin: bool = True) -> None:
        super().__init__(name="twin-stand-in", daemon=True)
        self.bootstrap, self.topics, self.catalog = bootstrap, topics, catalog
        self.twin_topic, self.alarm_topic = f"{topics.prefix}.twin", f"{topics.prefix}.alarms"
        self.period_s = period_s
        self.twin = twin
        self.halt = threading.Event()
        self.values: dict[str, dict[str, dict[str, Any]]] = {}  # machine name -> tag -> value
        self.alarms: dict[str, dict[str, Any]] = {}  # machine name -> its alarm
        self.commands: dict[str, dict[str, Any]] = {}
        self.changed: set[str] = set()
        self.published = 0
        self.alarms_raised: list[tuple[float, dict[str, Any]]] = []  # (Unix s, record)
        self.by_path = {t.path: t for t in catalog.tags().values()}

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([self.topics.readings, self.topics.anomalies,
                            self.topics.command_results] if self.twin else
                           [self.topics.anomalies])
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        next_publish = time.monotonic()
        try:
            while not self.halt.is_set():
                for msg in consumer.consume(500, timeout=0.1):
                    if msg.error() is None and msg.value() is not None:
                        self._take(msg.topic() or "", msg.value() or b"", producer)
                if time.monotonic() >= next_publish:
                    self._publish(producer)
                    next_publish = time.monotonic() + self.period_s
        finally:
            producer.flush(10)
            consumer.close()

    def _take(self, topic: str, value: bytes, producer: Producer) -> None:
        try:
            if topic == self.topics.readings:
                for r in ReadingFrame.decode(value).readings():
                    info = self.by_path.get(r.tag)
                    if info is not None:
                        self.values.setdefault(info.machine.name, {})[info.spec.name] = {
                            "value": r.value, "text": r.text, "quality": QUALITY[r.quality],
                            "ts": r.ts}
                        self.changed.add(info.machine.name)
            elif topic == self.topics.anomalies:
                self._anomaly(Anomaly.decode(value), producer)
            else:
                res = CommandResult.decode(value)
                info = self.by_path.get(res.setpoint)
                if info is not None:
                    self.commands[info.machine.name] = {
                        "command_id": res.command_id, "setpoint": res.setpoint,
                        "value": res.requested, "status": res.status, "reason": res.detail,
                        "at": res.executed_at}
                    self.changed.add(info.machine.name)
        except ContractError:
            return  # the real stages dead-letter these; the stand-in has nothing to show

    def _anomaly(self, anomaly: Anomaly, producer: Producer) -> None:
        info = self.by_path.get(anomaly.tag)
        if info is None or info.machine.name in self.alarms:
            return
        machine = info.machine
        record = alarm_record(
            self.catalog.machine_path(machine), [anomaly.tag],
            f"{info.spec.name} {anomaly.feature} {anomaly.value:.1f} {info.spec.unit} is "
            f"abnormal (score {anomaly.score:.1f} > {anomaly.threshold:.1f})",
            started_at=anomaly.window_start, score=anomaly.score / anomaly.threshold)
        self.alarms[machine.name] = record
        self.alarms_raised.append((time.time(), record))
        producer.produce(self.alarm_topic, key=record["asset"].encode(),
                         value=json.dumps(record).encode())
        self.changed.add(machine.name)

    def _publish(self, producer: Producer) -> None:
        if not self.twin:
            self.changed.clear()
            producer.poll(0)
            return
        for name in sorted(self.changed):
            tags = self.values.get(name, {})
            fault = (tags.get("fault") or {}).get("value")
            running = (tags.get("running") or {}).get("value")
            state = ("fault" if fault else "running" if running else
                     "idle" if running is not None else "unknown")
            alarm = self.alarms.get(name)
            entry = {k: alarm[k] for k in _TWIN_ALARM} if alarm else None
            rec = twin_record(self.catalog, name, tags, state=state,
                              alarms=[entry] if entry else [],
                              last_command=self.commands.get(name))
            producer.produce(self.twin_topic, key=rec["machine"].encode(),
                             value=json.dumps(rec).encode())
            self.published += 1
        self.changed.clear()
        producer.poll(0)
