"""The Sparkplug B codec (Eclipse Sparkplug 3.0): topics, payloads and metric values.

Shared by the MQTT connector (decoding) and the simulator's edge node (encoding). The
payload is protobuf (``sparkplug_b.proto``, compiled into ``sparkplug_b_pb2``); a topic is
``spBv1.0/GROUP/TYPE/EDGE_NODE[/DEVICE]``, and the primary host's state is
``spBv1.0/STATE/HOST_ID`` with a JSON payload. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from google.protobuf.message import DecodeError

from schemas.exceptions import ContractError
from schemas.sparkplug_b_pb2 import Payload

__all__ = [
    "BDSEQ_METRIC",
    "MESSAGE_TYPES",
    "NAMESPACE",
    "REBIRTH_METRIC",
    "DataType",
    "MetricValue",
    "Payload",
    "SparkplugTopic",
    "build_payload",
    "decode_payload",
    "metric_properties",
    "metric_value",
    "new_metric",
    "parse_topic",
    "state_payload",
    "state_topic",
]

NAMESPACE = "spBv1.0"
MESSAGE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH", "NCMD",
                           "DBIRTH", "DDATA", "DDEATH", "DCMD"})
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"


class DataType(IntEnum):
    """Sparkplug data types (spec 6.4.16); the scalar ones millstream turns into values."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_TEXT_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed Sparkplug topic; ``device`` is None for node messages."""

    group: str
    message_type: str
    edge_node: str
    device: str | None = None

    @property
    def node_key(self) -> str:
        return f"{self.group}/{self.edge_node}"

    def __str__(self) -> str:
        tail = f"/{self.device}" if self.device is not None else ""
        return f"{NAMESPACE}/{self.group}/{self.message_type}/{self.edge_node}{tail}"


def parse_topic(topic: str) -> SparkplugTopic | None:
    """``spBv1.0/G/DDATA/E/D`` -> SparkplugTopic; None for STATE or a topic that is not
    Sparkplug B; ContractError for a ``spBv1.0/`` topic of the wrong shape."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE or (len(parts) == 3 and parts[1] == "STATE"):
        return None
    if len(parts) not in (4, 5) or parts[2] not in MESSAGE_TYPES or not all(parts):
        raise ContractError("sparkplug-topic", f"{topic!r} is not spBv1.0/GROUP/TYPE/EDGE_NODE"
                            "[/DEVICE] with TYPE one of " + ", ".join(sorted(MESSAGE_TYPES)))
    is_device = parts[2].startswith("D")
    if is_device != (len(parts) == 5):
        raise ContractError("sparkplug-topic", f"{topic!r}: {parts[2]} "
                            f"{'needs' if is_device else 'takes no'} a device id")
    return SparkplugTopic(parts[1], parts[2], parts[3], parts[4] if is_device else None)


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def state_payload(online: bool, timestamp: int) -> bytes:
    """A primary host's STATE (spec 3.0: JSON, published retained at QoS 1)."""
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


def decode_payload(raw: bytes) -> Payload:
    """Parse a Sparkplug B payload; ContractError ``sparkplug-malformed`` if it is not one."""
    payload = Payload()
    try:
        payload.ParseFromString(raw)
    except DecodeError as exc:
        raise ContractError(
            "sparkplug-malformed",
            f"not a Sparkplug B protobuf payload ({len(raw)} bytes: {exc})") from exc
    return payload


@dataclass(frozen=True, slots=True)
class MetricValue:
    """A metric's value as a reading takes it: a number, a text, or why there is none."""

    value: float | None = None
    text: str | None = None
    problem: str | None = None  # set when the metric carries no usable value


def metric_value(metric: Payload.Metric, datatype: int) -> MetricValue:
    """The value of ``metric`` read as ``datatype`` (from the birth certificate).

    Signed integers arrive in the unsigned fields in two's complement (spec 6.4.16); they
    are sign-extended from the type's width. Booleans become 0/1, DateTime its ms.
    """
    if metric.is_null:
        return MetricValue(problem="null value (is_null)")
    field = metric.WhichOneof("value")
    if field is None:
        return MetricValue(problem="the metric carries no value")
    raw: Any = getattr(metric, field)
    try:
        dt = DataType(datatype)
    except ValueError:
        return MetricValue(problem=f"Sparkplug datatype {datatype} is not a scalar")
    if dt in _TEXT_TYPES:
        return MetricValue(text=str(raw)) if field == "string_value" else MetricValue(
            problem=f"{dt.name} metric carries {field}")
    if field in ("int_value", "long_value"):
        bits = _SIGNED_BITS.get(dt)
        if bits is not None:
            raw &= (1 << bits) - 1
            if raw >= 1 << (bits - 1):
                raw -= 1 << bits
        return MetricValue(value=float(raw))
    if field in ("float_value", "double_value"):
        return (MetricValue(value=float(raw)) if math.isfinite(raw)
                else MetricValue(problem=f"{raw} is not a finite number"))
    if field == "boolean_value":
        return MetricValue(value=1.0 if raw else 0.0)
    if field == "string_value":
        return MetricValue(problem=f"a string value on a {dt.name} metric")
    return MetricValue(problem=f"{dt.name} values ({field}) are not bridged to readings")


def new_metric(name: str | None, alias: int | None, datatype: DataType, value: Any, *,
               timestamp: int | None = None,
               properties: dict[str, str] | None = None) -> Payload.Metric:
    """A metric for a birth (name and alias) or data message (alias only)."""
    m = Payload.Metric()
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    if timestamp is not None:
        m.timestamp = timestamp
    m.datatype = int(datatype)
    if value is None:
        m.is_null = True
    elif datatype == DataType.Boolean:
        m.boolean_value = bool(value)
    elif datatype in (DataType.Float,):
        m.float_value = float(value)
    elif datatype == DataType.Double:
        m.double_value = float(value)
    elif datatype in _TEXT_TYPES:
        m.string_value = str(value)
    elif datatype in (DataType.Int64, DataType.UInt64, DataType.DateTime):
        m.long_value = int(value) & ((1 << 64) - 1)
    else:
        m.int_value = int(value) & ((1 << 32) - 1)
    for key, text in (properties or {}).items():
        m.properties.keys.append(key)
        pv = m.properties.values.add()
        pv.type = int(DataType.String)
        pv.string_value = text
    return m


def metric_properties(metric: Payload.Metric) -> dict[str, str]:
    """A metric's string-valued properties (engineering units and the like)."""
    props = metric.properties
    return {k: v.string_value for k, v in zip(props.keys, props.values, strict=False)
            if v.WhichOneof("value") == "string_value"}


def build_payload(metrics: Iterable[Payload.Metric], *, timestamp: int,
                  seq: int | None) -> bytes:
    """Serialise a payload; ``seq`` None for NDEATH (which carries only bdSeq)."""
    p = Payload(timestamp=timestamp)
    if seq is not None:
        p.seq = seq
    p.metrics.extend(metrics)
    return p.SerializeToString()
