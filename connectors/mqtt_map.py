"""Plain MQTT messages onto readings, by the source's topic mappings (no I/O).

:class:`TopicMapper` finds the first mapping whose pattern matches the topic, fills the
tag template with the captures, resolves it in the catalog (a tag of a machine on this
source) and reads the payload: a number, a text, or JSON with the value, timestamp and
quality at JSON paths. Anything that does not fit raises :class:`ContractError` with a
stable reason, which the connector dead-letters.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, NamedTuple

from schemas.catalog import Catalog, SourceSpec, TagInfo
from schemas.exceptions import CatalogError, ContractError
from schemas.mqtt import JsonPath, MqttSpec, TopicMapping
from schemas.readings import Quality

__all__ = ["MappedReading", "TopicMapper", "extract", "resolve_tag"]

_QUALITY = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}


class MappedReading(NamedTuple):
    tag: str
    ts: int
    value: float | None
    quality: Quality
    status: str | None
    text: str | None


def resolve_tag(catalog: Catalog, source: str, ref: str) -> TagInfo | None:
    """The catalog tag ``ref`` (``machine/tag`` or a full path) if it is on ``source``."""
    try:
        info = catalog.info(ref)
    except CatalogError:
        return None
    return info if info.machine.source == source else None


def extract(doc: Any, path: JsonPath, text: str) -> Any:
    """The value at ``path`` in ``doc``; ContractError json-mapping naming the path."""
    cur = doc
    for step in path:
        if isinstance(cur, dict) and isinstance(step, str) and step in cur:
            cur = cur[step]
        elif isinstance(cur, list) and (isinstance(step, int) or str(step).isdigit()) \
                and int(step) < len(cur):
            cur = cur[int(step)]
        else:
            raise ContractError("json-mapping", f"the payload has nothing at {text} "
                                f"(stopped at {step!r})")
    return cur


class TopicMapper:
    """Decodes one plain MQTT message into one reading by the first matching mapping."""

    def __init__(self, catalog: Catalog, spec: SourceSpec) -> None:
        assert spec.mqtt is not None
        self.catalog = catalog
        self.source = spec.name
        self.mappings: list[TopicMapping] = list(spec.mqtt.topics)
        self._tags: dict[str, TagInfo] = {}

    @staticmethod
    def filters(spec: MqttSpec) -> list[str]:
        return [m.pattern.filter for m in spec.topics]

    def decode(self, topic: str, payload: bytes, now: int) -> MappedReading:
        for mapping in self.mappings:
            captures = mapping.pattern.match(topic)
            if captures is not None:
                return self._read(mapping, captures, topic, payload, now)
        raise ContractError("unmapped-topic",
                            f"topic {topic!r} matches none of the source's topic patterns")

    def _read(self, mapping: TopicMapping, captures: dict[str, str], topic: str,
              payload: bytes, now: int) -> MappedReading:
        ref = mapping.tag.format(**captures)
        info = self._tags.get(ref) or resolve_tag(self.catalog, self.source, ref)
        if info is not None:
            self._tags[ref] = info  # only known tags: unknown topics cannot grow the cache
        if info is None:
            raise ContractError("unknown-tag", (
                f"topic {topic!r} maps to tag {ref!r} (pattern {mapping.topic!r} -> "
                f"{mapping.tag!r}), which is not a tag of a machine on source {self.source!r}; "
                "add it to the catalog or change the mapping"))
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError("not-utf8-payload",
                                f"the payload on {topic!r} is not UTF-8 text ({exc})") from exc
        is_text = info.spec.kind == "text"
        if mapping.payload != "json":
            return self._value(info, text.strip(), now, Quality.GOOD,
                               is_text or mapping.payload == "text", topic)
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ContractError("not-json", f"the payload on {topic!r} is not JSON ({exc}); "
                                "the mapping expects JSON") from exc
        value_path, ts_path, q_path = mapping.paths
        raw = extract(doc, value_path, mapping.value)
        ts = now if ts_path is None else _timestamp(extract(doc, ts_path, str(mapping.timestamp)),
                                                    mapping.timestamp_unit)
        quality = Quality.GOOD if q_path is None else _quality(
            extract(doc, q_path, str(mapping.quality)))
        return self._value(info, raw, ts, quality, is_text, topic)

    @staticmethod
    def _value(info: TagInfo, raw: Any, ts: int, quality: Quality, is_text: bool,
               topic: str) -> MappedReading:
        if is_text:
            return MappedReading(info.path, ts, None, quality, None,
                                 raw if isinstance(raw, str) else json.dumps(raw))
        if raw is None:
            return MappedReading(info.path, ts, None, Quality.BAD, "null value", None)
        value = _number(raw)
        if value is None:
            raise ContractError("not-a-number", f"the value on {topic!r} for {info.path} is "
                                f"{str(raw)[:60]!r}, not a number")
        if not math.isfinite(value):
            return MappedReading(info.path, ts, None, Quality.BAD, f"{value} is not finite",
                                 None)
        return MappedReading(info.path, ts, value, quality, None, None)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low in ("true", "false"):
            return 1.0 if low == "true" else 0.0
        try:
            return float(low)
        except ValueError:
            return None
    return None


def _timestamp(raw: Any, unit: str) -> int:
    try:
        if unit == "iso8601":
            if not isinstance(raw, str):
                raise ValueError("not a string")
            dt = datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                raise ValueError("no time zone (add Z or +00:00)")
            return int(dt.timestamp() * 1000)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError("not a number")
        return int(raw * 1000) if unit == "s" else int(raw)
    except ValueError as exc:
        raise ContractError("json-mapping", f"timestamp {str(raw)[:40]!r} is not a {unit} "
                            f"timestamp ({exc})") from exc


def _quality(raw: Any) -> Quality:
    if isinstance(raw, bool):
        return Quality.GOOD if raw else Quality.BAD
    if isinstance(raw, int) and raw in (0, 1, 2):
        return Quality(raw)
    if isinstance(raw, str) and raw.strip().lower() in _QUALITY:
        return _QUALITY[raw.strip().lower()]
    raise ContractError("json-mapping", f"quality {str(raw)[:40]!r} is not 0/1/2, "
                        "good/uncertain/bad or true/false")
