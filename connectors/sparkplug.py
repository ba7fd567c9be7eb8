"""The Sparkplug B host's state per edge node: births, aliases, sequence numbers, deaths.

Pure logic, no I/O: :class:`SparkplugHost` takes a parsed topic and payload and answers
with what to do (:class:`Outcome`): readings to emit, problems to dead-letter, and whether
to ask the node for a rebirth. The MQTT client around it is :mod:`connectors.mqtt`.

Rules (Eclipse Sparkplug 3.0, host application):

- NBIRTH starts a node session (bdSeq, seq 0) and defines its metrics: name, alias,
  datatype, properties. DBIRTH does the same for one device of that node. Births carry
  current values, which are emitted.
- NDATA/DDATA carry values by alias (or by name). ``seq`` counts 0-255 over every message
  of the node session; a jump is a gap: every metric of the node gets a BAD gap marker and
  a rebirth is requested. Data from a node or device without a birth, and an alias the
  birth did not define, are dead-lettered and a rebirth is requested.
- NDEATH (the node's MQTT will) marks every metric of the node and its devices BAD, if its
  bdSeq is the current session's (an older will is stale and ignored, counted). DDEATH
  marks the device's metrics BAD.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.readings import Quality
from schemas.sparkplug import (
    BDSEQ_METRIC,
    MetricValue,
    Payload,
    SparkplugTopic,
    metric_properties,
    metric_value,
)

__all__ = ["Emit", "MetricDef", "NodeState", "Outcome", "Problem", "SparkplugHost", "TagRule"]

logger = logging.getLogger(__name__)

# (group, edge node, device or None, metric name) -> the tag's full path, or None: unmapped
TagRule = Callable[[str, str, str | None, str], str | None]
_CONTROL_PREFIXES = ("Node Control/", "Device Control/")


@dataclass(frozen=True, slots=True)
class Emit:
    """One reading to emit."""

    tag: str
    ts: int
    value: float | None
    quality: Quality
    status: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a message that could not be mapped: dead-lettered with the payload."""

    reason: str  # stable: sparkplug-no-birth, sparkplug-unknown-alias, unknown-tag, ...
    detail: str


@dataclass(slots=True)
class Outcome:
    """What the connector does after one message."""

    emits: list[Emit] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rebirth: bool = False  # publish NCMD Node Control/Rebirth to this node now


@dataclass(slots=True)
class MetricDef:
    """A metric as its birth certificate defined it."""

    name: str
    datatype: int
    device: str | None
    tag: str | None  # None: no catalog tag for it (counted, not emitted)
    unit: str | None = None
    last_ts: int = 0


@dataclass(slots=True)
class NodeState:
    """One edge node session as the host sees it."""

    online: bool = False
    bd_seq: int | None = None
    seq: int | None = None
    # keyed by device too: aliases should be unique per node, but a node that reuses one
    # across devices must not have its values land on another device's tags
    by_alias: dict[tuple[str | None, int], MetricDef] = field(default_factory=dict)
    by_name: dict[tuple[str | None, str], MetricDef] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)  # devices born and not dead
    rebirth_at: int | None = None  # when a rebirth was last requested (ms)


class SparkplugHost:
    """Tracks every edge node seen; ``handle()`` one message at a time (one thread).

    ``tag_rule`` maps a metric onto a catalog tag path; ``rebirth_every_ms`` bounds how
    often one node is asked for a rebirth while it keeps sending what cannot be used.
    """

    def __init__(self, tag_rule: TagRule, *, rebirth_every_ms: int = 5000) -> None:
        self.tag_rule = tag_rule
        self.rebirth_every_ms = rebirth_every_ms
        self.nodes: dict[str, NodeState] = {}
        self.counts: dict[str, int] = dict.fromkeys(
            ("births", "deaths", "stale_deaths", "seq_gaps", "rebirths_requested",
             "unknown_aliases", "no_birth", "unmapped_values", "commands_seen"), 0)

    def handle(self, topic: SparkplugTopic, payload: Payload, now: int) -> Outcome:
        out = Outcome()
        kind = topic.message_type
        if kind in ("NCMD", "DCMD"):
            self.counts["commands_seen"] += 1
            return out
        node = self.nodes.setdefault(topic.node_key, NodeState())
        if kind == "NBIRTH":
            self._nbirth(topic, node, payload, now, out)
        elif kind == "NDEATH":
            self._ndeath(topic, node, payload, now, out)
        elif not node.online:
            self._no_birth(topic, node, now, out, f"{kind} from edge node {topic.node_key}, "
                           "which has no birth certificate (NBIRTH) in this session")
        elif topic.device is not None and kind != "DBIRTH" and topic.device not in node.devices:
            self._check_seq(topic, node, payload, now, out)
            self._no_birth(topic, node, now, out, f"{kind} from device {topic.device} of "
                           f"{topic.node_key}, which has no birth certificate (DBIRTH)")
        else:
            self._check_seq(topic, node, payload, now, out)
            if kind == "DBIRTH":
                self._dbirth(topic, node, payload, now, out)
            elif kind == "DDEATH":
                assert topic.device is not None
                node.devices.discard(topic.device)
                self._mark(node, now, f"gap: DDEATH {topic.node_key}/{topic.device}", out,
                           device=topic.device)
            else:
                self._data(topic, node, payload, now, out)
        if out.rebirth:
            self.counts["rebirths_requested"] += 1
        return out

    # -- births and deaths ---------------------------------------------------------------
    def _nbirth(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
                out: Outcome) -> None:
        self.counts["births"] += 1
        bd_seq = next((int(m.long_value or m.int_value) for m in p.metrics
                       if m.name == BDSEQ_METRIC), None)
        if node.online and bd_seq != node.bd_seq:  # a new session without an NDEATH seen
            self._mark(node, now, f"gap: {t.node_key} began a new session (bdSeq "
                       f"{node.bd_seq} -> {bd_seq}) without an NDEATH", out)
        node.online, node.bd_seq, node.rebirth_at = True, bd_seq, None
        node.seq = p.seq if p.HasField("seq") else 0
        node.by_alias.clear()
        node.by_name.clear()
        node.devices.clear()
        self._define(t, node, p, now, out)

    def _dbirth(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
                out: Outcome) -> None:
        self.counts["births"] += 1
        for key in [k for k in node.by_name if k[0] == t.device]:
            del node.by_name[key]
        for alias_key in [k for k in node.by_alias if k[0] == t.device]:
            del node.by_alias[alias_key]
        assert t.device is not None
        node.devices.add(t.device)
        self._define(t, node, p, now, out)

    def _define(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
                out: Outcome) -> None:
        """Register the birth's metrics and emit their current values."""
        unmapped: list[str] = []
        for m in p.metrics:
            if not m.name:
                out.problems.append(Problem("sparkplug-bad-birth", f"{t.message_type} of "
                                            f"{_where(t)} has a metric without a name"))
                continue
            if m.name == BDSEQ_METRIC or m.name.startswith(_CONTROL_PREFIXES):
                continue  # protocol metrics, not plant data
            d = MetricDef(m.name, m.datatype, t.device,
                          self.tag_rule(t.group, t.edge_node, t.device, m.name),
                          metric_properties(m).get("engUnit"))
            node.by_name[(t.device, m.name)] = d
            if m.HasField("alias"):
                node.by_alias[(t.device, m.alias)] = d
            if d.tag is None:
                unmapped.append(m.name)
            else:
                self._emit(d, m, p, now, out)
        if unmapped:
            out.problems.append(Problem("unknown-tag", (
                f"{t.message_type} of {_where(t)} defines {len(unmapped)} metric(s) that map "
                f"to no catalog tag: {', '.join(unmapped[:10])}; add the tags to the catalog "
                "or change the source's sparkplug tag rule (their values are not bridged)")))

    def _ndeath(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
                out: Outcome) -> None:
        bd_seq = next((int(m.long_value or m.int_value) for m in p.metrics
                       if m.name == BDSEQ_METRIC), None)
        if not node.online or (bd_seq is not None and node.bd_seq is not None
                               and bd_seq != node.bd_seq):
            self.counts["stale_deaths"] += 1
            logger.info("ignoring NDEATH of %s with bdSeq %s: the session is bdSeq %s%s",
                        t.node_key, bd_seq, node.bd_seq, "" if node.online else " (offline)")
            return
        self.counts["deaths"] += 1
        node.online = False
        node.devices.clear()
        self._mark(node, now, f"gap: NDEATH {t.node_key} (bdSeq {bd_seq})", out)

    def _mark(self, node: NodeState, now: int, status: str, out: Outcome, *,
              device: str | None = None) -> None:
        """A BAD gap marker on every mapped metric of ``device``, or of the whole node."""
        for d in node.by_name.values():
            if d.tag is not None and (device is None or d.device == device):
                ts = max(now, d.last_ts + 1)
                d.last_ts = ts
                out.emits.append(Emit(d.tag, ts, None, Quality.BAD, status))

    # -- data ------------------------------------------------------------------------------
    def _check_seq(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
                   out: Outcome) -> None:
        seq = p.seq if p.HasField("seq") else None
        expected = None if node.seq is None else (node.seq + 1) % 256
        if seq is not None:
            node.seq = seq
        if seq is None or expected is None or seq == expected:
            return
        self.counts["seq_gaps"] += 1
        self._mark(node, now, f"gap: Sparkplug seq of {t.node_key} jumped from "
                   f"{(expected - 1) % 256} to {seq} (messages lost)", out)
        self._ask_rebirth(node, now, out)

    def _data(self, t: SparkplugTopic, node: NodeState, p: Payload, now: int,
              out: Outcome) -> None:
        unknown: list[str] = []
        for m in p.metrics:
            d = (node.by_alias.get((t.device, m.alias)) if m.HasField("alias")
                 else node.by_name.get((t.device, m.name)))
            if d is None:
                unknown.append(f"alias {m.alias}" if m.HasField("alias") else repr(m.name))
            elif d.tag is None:
                self.counts["unmapped_values"] += 1
            else:
                self._emit(d, m, p, now, out)
        if unknown:
            self.counts["unknown_aliases"] += len(unknown)
            out.problems.append(Problem("sparkplug-unknown-alias", (
                f"{t.message_type} of {_where(t)} names {len(unknown)} metric(s) its birth "
                f"certificate did not define: {', '.join(unknown[:10])}; a rebirth was "
                "requested")))
            self._ask_rebirth(node, now, out)

    def _emit(self, d: MetricDef, m: Payload.Metric, p: Payload, now: int,
              out: Outcome) -> None:
        assert d.tag is not None
        ts = m.timestamp if m.HasField("timestamp") else (p.timestamp if p.HasField(
            "timestamp") else now)
        v: MetricValue = metric_value(m, d.datatype)
        d.last_ts = max(d.last_ts, ts)
        if v.problem is not None:
            out.emits.append(Emit(d.tag, ts, None, Quality.BAD, v.problem))
        else:
            out.emits.append(Emit(d.tag, ts, v.value, Quality.GOOD, None, v.text))

    def _no_birth(self, t: SparkplugTopic, node: NodeState, now: int, out: Outcome,
                  detail: str) -> None:
        self.counts["no_birth"] += 1
        out.problems.append(Problem("sparkplug-no-birth", detail + "; a rebirth was requested"))
        self._ask_rebirth(node, now, out)

    def _ask_rebirth(self, node: NodeState, now: int, out: Outcome) -> None:
        if node.rebirth_at is None or now - node.rebirth_at >= self.rebirth_every_ms:
            node.rebirth_at = now
            out.rebirth = True


def _where(t: SparkplugTopic) -> str:
    return f"{t.node_key}/{t.device}" if t.device else t.node_key
