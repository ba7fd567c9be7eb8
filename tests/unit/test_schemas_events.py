"""Derived-topic events: round trips, validation, and agreement with the JSON Schemas."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from schemas.control import AuditRecord, ControlRecord
from schemas.events import (
    Aggregate,
    Anomaly,
    Command,
    CommandResult,
    DeadLetter,
)
from schemas.exceptions import ContractError
from schemas.readings import FrameBuilder
from schemas.topics import Topics

SAMPLES: dict[str, Any] = {
    "aggregates": Aggregate("a/b/c/d/m/t", 1000, 2000, 10, 1.0, 3.0, 2.0, 0.5, 1.0, 3.0),
    "anomalies": Anomaly("id1", "a/b/c/d/m/t", 1000, 2000, "mean", 9.0, 12.5, 6.0,
                         "river.anomaly.StandardAbsoluteDeviation", 2500),
    "commands": Command("c1", "rule", "a/b/c/d/m", "a/b/c/d/m/sp", 5000.0, "hot", 1, 30001),
    "command-results": CommandResult("c1", "a/b/c/d/m/sp", 5000.0, None, "failed", "timeout", 9),
    "control": ControlRecord("kill-switch", "global", True, "drill", 5, None, "alice", "c2ln"),
    "command-audit": AuditRecord("a1", "c1", "rejected", "bad signature", "", "r", "hot",
                                 "a/b/c/d/m", "a/b/c/d/m/sp", None, 1.5, None,
                                 {"signature": "refused"}, False, 9),
    "deadletter": DeadLetter.of(stage="sink", reason="not-json", detail="x", topic="t",
                                partition=0, offset=7, key=b"k", value=b"\x00\xff"),
}


def _schema(topic: str) -> dict[str, Any]:
    text = resources.files("schemas").joinpath(f"jsonschema/{topic}.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


@pytest.mark.parametrize("suffix", sorted(SAMPLES))
def test_event_round_trips_and_matches_its_json_schema(suffix: str) -> None:
    event = SAMPLES[suffix]
    assert type(event).decode(event.encode()) == event
    jsonschema.validate(json.loads(event.encode()), _schema(f"millstream.{suffix}"))


def test_reading_frame_matches_its_json_schema() -> None:
    b = FrameBuilder("opcua-sim", 17)
    b.add("a/b/c/d/m/t", 5, 1.0)
    b.add("a/b/c/d/m/u", 5, None, status="gap: connection lost", server_ts=4)
    b.add("a/b/c/d/m/v", 5, None, text="LOT-42")
    frame = b.flush()
    assert frame is not None
    jsonschema.validate(json.loads(frame.encode()), _schema("millstream.readings"))


def test_every_topic_has_a_json_schema() -> None:
    for topic in Topics().all():
        assert _schema(topic)["title"]


def test_decode_names_the_bad_field() -> None:
    doc = json.loads(SAMPLES["commands"].encode())
    doc["value"] = "high"
    with pytest.raises(ContractError, match="value") as err:
        Command.decode(json.dumps(doc))
    assert err.value.reason == "bad-field"
    del doc["value"]
    with pytest.raises(ContractError, match="value is missing"):
        Command.decode(json.dumps(doc))


def test_decode_rejects_the_wrong_kind_of_event() -> None:
    with pytest.raises(ContractError) as err:
        Command.decode(SAMPLES["aggregates"].encode())
    assert err.value.reason == "wrong-schema"


def test_deadletter_keeps_binary_payloads_as_base64() -> None:
    dl = SAMPLES["deadletter"]
    assert dl.payload_encoding == "base64" and dl.payload == "AP8="
    text = DeadLetter.of(stage="s", reason="r", detail="d", topic="t", partition=0, offset=0,
                         key=None, value=b'{"a":1}')
    assert text.payload == '{"a":1}' and text.payload_encoding == "utf-8" and text.key is None
