"""MQTT mapping, pure parts: topic patterns, JSON paths, broker endpoints, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.mqtt_map import extract
from schemas.exceptions import ContractError
from schemas.mqtt import (
    MqttSpec,
    SparkplugSpec,
    TopicMapping,
    compile_pattern,
    parse_broker,
    parse_json_path,
)


def test_patterns_capture_and_filter() -> None:
    p = compile_pattern("plant1/{line}/+/{machine}/temperature")
    assert p.filter == "plant1/+/+/+/temperature"
    assert p.match("plant1/l1/x/cnc-01/temperature") == {"line": "l1", "machine": "cnc-01"}
    assert p.match("plant1/l1/x/cnc-01/pressure") is None
    assert p.match("plant1/l1/cnc-01/temperature") is None
    hashed = compile_pattern("plant1/{machine}/#")
    assert hashed.filter == "plant1/+/#"
    assert hashed.match("plant1/m/a/b") == {"machine": "m"}
    assert hashed.match("plant1/m") == {"machine": "m"}  # '#' matches the parent too
    assert compile_pattern("a.b/{x}").match("aXb/1") is None  # text is literal
    for bad in ("a/#/b", "a/b+/c", "a/{x}/{x}", "a/pre{x}"):
        with pytest.raises(ValueError):
            compile_pattern(bad)


def test_json_paths() -> None:
    doc = {"d": {"values": [{"v": 1.5}], "a key": 2}, "0": "zero"}
    assert extract(doc, parse_json_path("$.d.values[0].v"), "") == 1.5
    assert extract(doc, parse_json_path("d.values.0.v"), "") == 1.5
    assert extract(doc, parse_json_path("$.d['a key']"), "") == 2
    assert extract(doc, parse_json_path("$"), "") == doc
    with pytest.raises(ContractError) as err:
        extract(doc, parse_json_path("$.d.values[3].v"), "$.d.values[3].v")
    assert err.value.reason == "json-mapping" and "$.d.values[3].v" in err.value.detail
    with pytest.raises(ValueError):
        parse_json_path("$.a[b")


def test_brokers() -> None:
    assert parse_broker("mqtt://h:1884") == parse_broker("h:1884")
    b = parse_broker("mqtts://broker.plant")
    assert (b.host, b.port, b.tls) == ("broker.plant", 8883, True)
    with pytest.raises(ValueError):
        parse_broker("http://x:1/y")


def test_mapping_errors_say_what_to_do() -> None:
    with pytest.raises(ValidationError, match="capture a level by name"):
        TopicMapping(topic="plant/+/temp", tag="{machine}/temp")
    with pytest.raises(ValidationError, match="needs 'topics'"):
        MqttSpec()
    with pytest.raises(ValidationError, match=r"must use \{metric\}"):
        SparkplugSpec(device_tag="{device}/fixed")


def test_sparkplug_rule() -> None:
    sp = SparkplugSpec(rename={"Motor/Amps": "motor_current"})
    assert sp.tag_for("g", "Edge 1", "Press_02", "Hydraulic/Pressure (bar)") == (
        "press-02/hydraulic_pressure_bar")
    assert sp.tag_for("g", "Edge 1", None, "Motor/Amps") == "edge-1/motor_current"
    assert SparkplugSpec(group="g1", edge_nodes=["e1"]).filters() == [
        "spBv1.0/g1/+/e1", "spBv1.0/g1/+/e1/+"]
