"""How the catalog maps an MQTT broker onto tags (plain data, no I/O).

A source with ``protocol: mqtt`` names a broker (``mqtt://host:1883``, ``mqtts://host:8883``)
and in ``mqtt:`` how to connect and what to read:

- ``topics``: topic patterns onto tags. A pattern is an MQTT filter whose levels may be
  captured by name, ``plant1/{line}/{machine}/temperature``; ``+`` and a final ``#`` match
  without capturing. ``tag`` is a template over the captures, ``{machine}/temperature``
  (``machine/tag`` or a full ISA-95 path). The payload is a plain number, a text, or JSON
  whose value, timestamp and quality are found at JSON paths (``$.value``, ``$.d[0].v``).
- ``sparkplug``: Sparkplug B edge nodes of a group; a metric becomes the tag
  ``device_tag`` (``{device}/{metric}``) or ``node_tag`` for node metrics, with the names
  normalised to catalog names (``Motor/Speed RPM`` -> ``motor_speed_rpm``) unless renamed.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Broker",
    "JsonPath",
    "MqttSpec",
    "MqttTls",
    "SparkplugSpec",
    "TopicMapping",
    "TopicPattern",
    "compile_pattern",
    "parse_broker",
    "parse_json_path",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool


def parse_broker(endpoint: str) -> Broker:
    """``mqtt://host[:1883]``, ``mqtts://host[:8883]`` or ``host:port`` -> Broker."""
    m = re.fullmatch(r"(?:(?P<scheme>mqtts?|tcp|ssl)://)?(?P<host>\[[^\]]+\]|[^:/\s]+)"
                     r"(?::(?P<port>\d{1,5}))?/?", endpoint.strip())
    if m is None:
        raise ValueError(f"MQTT endpoint {endpoint!r} is not mqtt://host:port or "
                         "mqtts://host:port; write it like mqtt://broker.plant:1883")
    tls = m.group("scheme") in ("mqtts", "ssl")
    port = int(m.group("port") or (8883 if tls else 1883))
    if not 0 < port < 65536:
        raise ValueError(f"MQTT endpoint {endpoint!r}: port {port} is not 1-65535")
    return Broker(m.group("host").strip("[]"), port, tls)


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A compiled topic pattern: the MQTT filter to subscribe and a matcher with captures."""

    filter: str
    regex: re.Pattern[str]
    names: tuple[str, ...]

    def match(self, topic: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(topic)
        return None if m is None else m.groupdict()


def compile_pattern(pattern: str) -> TopicPattern:
    """``plant1/{line}/+/temp/#`` -> filter ``plant1/+/+/temp/#`` and a regex capturing line."""
    levels = pattern.split("/")
    parts: list[str] = []
    names: list[str] = []
    for i, level in enumerate(levels):
        capture = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", level)
        if level == "#":
            if i != len(levels) - 1:
                raise ValueError(f"topic {pattern!r}: '#' may only be the last level")
            parts.append("#")
        elif level == "+":
            parts.append("+")
        elif capture is not None:
            if capture.group(1) in names:
                raise ValueError(f"topic {pattern!r} captures {{{capture.group(1)}}} twice")
            names.append(capture.group(1))
            parts.append("+")
        elif "+" in level or "#" in level or "{" in level or "}" in level:
            raise ValueError(f"topic {pattern!r}: level {level!r} mixes a wildcard or capture "
                             "with text; a level is text, '+', '#' or '{name}'")
        else:
            parts.append(level)
    regex = ""
    for i, (level, part) in enumerate(zip(levels, parts, strict=True)):
        sep = "/" if i else ""
        if part == "#":
            regex += "(?:/.*)?" if i else ".*"
        elif part == "+" and level != "+":
            regex += sep + f"(?P<{level[1:-1]}>[^/]*)"
        elif part == "+":
            regex += sep + "[^/]*"
        else:
            regex += sep + re.escape(part)
    return TopicPattern("/".join(parts), re.compile(regex, re.DOTALL), tuple(names))


JsonPath = tuple[str | int, ...]


def parse_json_path(text: str) -> JsonPath:
    """``$.data.values[0].v`` (or ``data.values.0.v``) -> ('data', 'values', 0, 'v').

    ``$`` alone is the whole document; ``['a key']`` names a key with dots or spaces.
    """
    body = text.strip()
    body = body[1:] if body.startswith("$") else "." + body if body else body
    out: list[str | int] = []
    for m in re.finditer(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]|(.)", body):
        if m.group(5) is not None:
            raise ValueError(f"JSON path {text!r} is not like $.key.sub[0]; "
                             f"unexpected {m.group(5)!r}")
        if m.group(1) is not None:
            out.append(m.group(1))  # a digit key also indexes a list (see extract)
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3) if m.group(3) is not None else m.group(4))
    return tuple(out)


class TopicMapping(_Frozen):
    """Plain MQTT topics onto tags; see the module docstring."""

    topic: str
    tag: str  # template over the topic's captures: "{machine}/temperature"
    payload: Literal["number", "json", "text"] = "number"
    value: str = "$"  # JSON path of the value (payload json)
    timestamp: str | None = None  # JSON path of the source timestamp; None: arrival time
    timestamp_unit: Literal["ms", "s", "iso8601"] = "ms"
    quality: str | None = None  # JSON path: 0/1/2, good/uncertain/bad, true/false

    @cached_property
    def pattern(self) -> TopicPattern:
        return compile_pattern(self.topic)

    @cached_property
    def paths(self) -> tuple[JsonPath, JsonPath | None, JsonPath | None]:
        return (parse_json_path(self.value),
                None if self.timestamp is None else parse_json_path(self.timestamp),
                None if self.quality is None else parse_json_path(self.quality))

    @model_validator(mode="after")
    def _valid(self) -> TopicMapping:
        names = compile_pattern(self.topic).names
        used = {f for _, f, _, _ in string.Formatter().parse(self.tag) if f is not None}
        missing = used - set(names)
        if missing:
            raise ValueError(
                f"topic mapping {self.topic!r}: tag {self.tag!r} uses "
                f"{', '.join('{' + n + '}' for n in sorted(missing))}, which the topic does "
                "not capture; capture a level by name, e.g. plant1/{machine}/temperature")
        self.paths  # noqa: B018 - validates the JSON paths now, not at the first message
        return self


_NON_NAME = re.compile(r"[^a-z0-9_]+")
_NON_MACHINE = re.compile(r"[^a-z0-9-]+")


class SparkplugSpec(_Frozen):
    """Sparkplug B edge nodes to bridge, and how their metric names become tags."""

    group: str = "+"  # the Sparkplug group id; "+": every group
    edge_nodes: list[str] = []  # edge node ids; empty: every node of the group
    device_tag: str = "{device}/{metric}"  # device metrics; also {group}, {node}
    node_tag: str = "{node}/{metric}"  # metrics of the edge node itself
    rename: dict[str, str] = {}  # metric name -> tag name, before the rule applies
    normalize: bool = True  # lower-case, other characters to "_" (tags) or "-" (machines)
    host_id: str | None = None  # act as primary host application: publish spBv1.0/STATE/ID
    rebirth_every_ms: int = Field(default=5000, ge=0)  # at most one rebirth request per node

    @model_validator(mode="after")
    def _valid(self) -> SparkplugSpec:
        for name, template, allowed in (("device_tag", self.device_tag,
                                         {"group", "node", "device", "metric"}),
                                        ("node_tag", self.node_tag, {"group", "node", "metric"})):
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            if not used <= allowed or "metric" not in used:
                raise ValueError(
                    f"sparkplug {name} {template!r} may use {', '.join(sorted(allowed))} "
                    "in braces and must use {metric}, e.g. '{device}/{metric}'")
        if "/" in self.group or "#" in self.group or any(
                "/" in n or "+" in n or "#" in n for n in self.edge_nodes):
            raise ValueError("sparkplug group and edge_nodes are ids, not topic filters")
        return self

    def tag_for(self, group: str, node: str, device: str | None, metric: str) -> str:
        """The tag reference (``machine/tag``) the rule gives a metric."""
        metric = self.rename.get(metric, metric)
        fields: dict[str, Any] = {"group": group, "node": node, "device": device or "",
                                  "metric": metric}
        if self.normalize:
            fields = {k: (_NON_NAME if k == "metric" else _NON_MACHINE).sub(
                "_" if k == "metric" else "-", str(v).lower()).strip("_-")
                for k, v in fields.items()}
        return (self.device_tag if device is not None else self.node_tag).format(**fields)

    def filters(self) -> list[str]:
        """The MQTT filters that receive this spec's Sparkplug messages."""
        nodes = self.edge_nodes or ["+"]
        return [f for n in nodes for f in (f"spBv1.0/{self.group}/+/{n}",
                                           f"spBv1.0/{self.group}/+/{n}/+")]


class MqttTls(_Frozen):
    """TLS to the broker: CA to trust, and a client certificate if the broker wants one."""

    ca_file: Path | None = None  # None: the system's trusted CAs
    certificate: Path | None = None
    private_key: Path | None = None
    insecure: bool = False  # skip the host name check (test brokers only)

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("mqtt tls: give both certificate and private_key, or neither")
        return self


class MqttSpec(_Frozen):
    """How a source connects to its broker and what it reads there."""

    client_id: str | None = None  # default millstream-<source name>; stable for sessions
    version: Literal["5", "3.1.1"] = "5"
    qos: Literal[0, 1, 2] = 1
    clean_start: bool = False  # False: the broker keeps the session and queues QoS 1/2
    session_expiry_s: int = Field(default=86400, ge=0)  # MQTT 5: how long it keeps it
    keepalive_s: int = Field(default=30, ge=5)
    tls: MqttTls | None = None
    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    max_payload_bytes: int = Field(default=1 << 20, ge=16)  # larger ones are dead-lettered
    topics: list[TopicMapping] = []
    sparkplug: SparkplugSpec | None = None

    @model_validator(mode="after")
    def _valid(self) -> MqttSpec:
        if not self.topics and self.sparkplug is None:
            raise ValueError("an mqtt source needs 'topics' (topic patterns onto tags) or "
                             "'sparkplug' (Sparkplug B edge nodes), or both")
        if self.password_env and self.password_file:
            raise ValueError("mqtt: give password_env or password_file, not both")
        if self.username and self.username_env:
            raise ValueError("mqtt: give username or username_env, not both")
        if bool(self.password_env or self.password_file) and not (
                self.username or self.username_env):
            raise ValueError("mqtt: a password needs a username (username or username_env)")
        return self
