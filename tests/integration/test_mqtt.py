"""The MQTT connector against a real Mosquitto and a real Kafka: topic mappings, bad input,
and a broker restart under QoS 1 with a persistent session."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.events import now_ms
from schemas.mqtt import parse_broker
from schemas.readings import Quality
from schemas.topics import Topics
from tests.support.mqtt import (
    MqttPublisher,
    RunningSource,
    consume,
    letters_of,
    mqtt_catalog,
    readings_of,
)

pytestmark = pytest.mark.integration

TOPICS = [
    {"topic": "plant9/{line}/{machine}/temperature", "tag": "{machine}/temperature"},
    {"topic": "plant9/json/{machine}/{tag}", "tag": "{machine}/{tag}", "payload": "json",
     "value": "$.d.v", "timestamp": "$.ts", "timestamp_unit": "s", "quality": "$.q"},
    {"topic": "plant9/text/{machine}/+", "tag": "{machine}/state_text", "payload": "text"},
]
PATH = "acme/plant9/baking/line1"


def test_topic_patterns_and_json_payloads(mosquitto: EmbeddedMosquitto, kafka_bootstrap: str,
                                          topics: Topics) -> None:
    catalog = mqtt_catalog(mosquitto.endpoint, {"client_id": "t-map", "topics": TOPICS})
    pub = MqttPublisher(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        pub.publish("plant9/line1/oven-01/temperature", "181.5")
        pub.publish("plant9/line7/oven-02/temperature", b" 42 ")
        pub.publish("plant9/json/oven-01/pressure",
                    json.dumps({"d": {"v": 2.5}, "ts": 1_700_000_000.25, "q": "uncertain"}))
        pub.publish("plant9/json/oven-02/running", json.dumps({"d": {"v": True}, "ts": 1,
                                                               "q": 0}))
        pub.publish("plant9/json/oven-02/speed", json.dumps({"d": {"v": None}, "ts": 2,
                                                             "q": "good"}))
        pub.publish("plant9/text/oven-01/anything", "baking rye")
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=6, settle=0.5))
        status = run.stop()
    pub.close()
    by_tag = {r.tag.removeprefix(PATH + "/"): r for r in got}
    assert len(got) == 6 and status["dead_lettered"] == 0, status
    assert by_tag["oven-01/temperature"].value == 181.5
    assert by_tag["oven-02/temperature"].value == 42.0
    p = by_tag["oven-01/pressure"]
    assert (p.value, p.ts, p.quality) == (2.5, 1_700_000_000_250, Quality.UNCERTAIN)
    assert (by_tag["oven-02/running"].value, by_tag["oven-02/running"].ts) == (1.0, 1000)
    s = by_tag["oven-02/speed"]
    assert (s.value, s.quality, s.status) == (None, Quality.BAD, "null value")
    assert by_tag["oven-01/state_text"].text == "baking rye"
    assert [r.seq for r in got] == list(range(1, 7))


def test_bad_input_is_dead_lettered_and_counted(mosquitto: EmbeddedMosquitto,
                                                kafka_bootstrap: str, topics: Topics) -> None:
    catalog = mqtt_catalog(mosquitto.endpoint, {"client_id": "t-bad", "topics": TOPICS,
                                                "max_payload_bytes": 1 << 20})
    pub = MqttPublisher(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        pub.publish("plant9/json/oven-01/pressure", b"{not json")
        pub.publish("plant9/json/oven-01/pressure", json.dumps({"value": 1, "ts": 1, "q": 0}))
        pub.publish("plant9/json/oven-01/pressure", json.dumps({"d": {"v": 1}, "ts": "x",
                                                                "q": 0}))
        pub.publish("plant9/line1/mixer-09/temperature", "20")  # no such machine
        pub.publish("plant9/line1/oven-01/temperature", "hot")
        pub.publish("plant9/line1/oven-01/temperature", b"7" * (10 * 1024 * 1024))  # 10 MB
        # Mosquitto refuses a topic that is not UTF-8 (it disconnects the publisher), so the
        # connector's own check is driven through its message handler on its event loop
        raw = _publish_raw(mosquitto.endpoint, b"plant9/\xff\xfe/temperature", b"1")
        assert raw == b"", "Mosquitto accepted a non-UTF-8 topic"
        run._loop.call_soon_threadsafe(run.source.handle, b"plant9/\xff/temp", b"1", now_ms())
        pub.publish("plant9/line1/oven-01/temperature", "99")  # still alive after all that
        letters = letters_of(consume(kafka_bootstrap, topics.deadletter, count=7, settle=0.5))
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=1))
        status = run.stop()
    pub.close()
    reasons = sorted(d.reason for d in letters)
    assert reasons == sorted(["not-json", "json-mapping", "json-mapping", "unknown-tag",
                              "not-a-number", "payload-too-large", "topic-not-utf8"])
    assert status["dead_letter_reasons"] == {r: reasons.count(r) for r in set(reasons)}
    assert [r.value for r in got] == [99.0]
    big = next(d for d in letters if d.reason == "payload-too-large")
    assert "10,485,760 bytes" in big.detail and len(big.payload) == 64 * 1024
    bad_topic = next(d for d in letters if d.reason == "topic-not-utf8")
    assert bad_topic.topic == "plant9/\\xff/temp"
    assert all(d.stage == "connector" and d.key == "mqtt-src" for d in letters)
    assert len({d.offset for d in letters}) == 7  # numbered: none collapse in ClickHouse


def _publish_raw(endpoint: str, topic: bytes, payload: bytes) -> bytes:
    """CONNECT and PUBLISH (QoS 0, MQTT 3.1.1) over a raw socket; what the broker sends
    back after the PUBLISH (b"" when it closes the connection)."""
    b = parse_broker(endpoint)
    client_id = b"raw-bad-topic"
    var = b"\x00\x04MQTT\x04\x02\x00\x05" + len(client_id).to_bytes(2, "big") + client_id
    with socket.create_connection((b.host, b.port), timeout=5) as s:
        s.sendall(bytes([0x10, len(var)]) + var)
        assert s.recv(4)[:1] == b"\x20"  # CONNACK
        body = len(topic).to_bytes(2, "big") + topic + payload
        s.sendall(bytes([0x30, len(body)]) + body)
        s.settimeout(3)
        try:
            return s.recv(16)
        except TimeoutError:
            return b"timeout"


def test_broker_restart_under_qos1_loses_nothing(tmp_path: Path, kafka_bootstrap: str,
                                                 topics: Topics) -> None:
    """The connector's session outlives it and the broker: what was published while the
    connector was away, across a broker restart, and during a second restart arrives."""
    broker = EmbeddedMosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        catalog = mqtt_catalog(broker.endpoint, {"client_id": "t-qos1", "qos": 1,
                                                 "clean_start": False, "topics": TOPICS})
        topic = "plant9/line1/oven-01/temperature"
        with RunningSource(catalog, kafka_bootstrap, topics):
            pass  # the session (and its subscription) now lives in the broker
        pub = MqttPublisher(broker.endpoint, "t-qos1-pub")
        for i in range(1, 201):  # the connector is away
            pub.publish(topic, str(i))
        broker.restart(down_s=1.0)  # queued messages must survive in the persistence file
        _wait(lambda: pub.client.is_connected(), 20)
        for i in range(201, 401):
            pub.publish(topic, str(i))
        with RunningSource(catalog, kafka_bootstrap, topics) as run:
            for i in range(401, 601):  # a broker restart while the connector runs
                # paho keeps QoS 1 messages published while it is disconnected and sends
                # them once it is back (the device's own buffer)
                pub.client.publish(topic, str(i), qos=1)
                if i == 500:
                    broker.restart(down_s=1.0)
            got = readings_of(consume(kafka_bootstrap, topics.readings, count=600, settle=1.0,
                                      timeout=60))
            status = run.stop()
        pub.close()
    finally:
        broker.stop()
    values = [int(r.value or 0) for r in got]
    assert set(values) == set(range(1, 601)), f"lost: {sorted(set(range(1, 601)) - set(values))}"
    # QoS 1 is at least once: a message in flight at the restart may come twice, never lost
    assert len(values) - 600 <= 20, f"{len(values) - 600} duplicates"
    assert status["connects"] >= 2 and status["dead_lettered"] == 0


def _wait(cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_full_spool_under_policy_block_leaves_the_broker_and_loses_nothing(
        mosquitto: EmbeddedMosquitto, kafka_bootstrap: str, topics: Topics) -> None:
    """While the publisher is blocked (a full spool, policy block) the connector leaves
    the broker, which queues its persistent session's QoS 1 messages; once unblocked it
    comes back and every message arrives."""
    catalog = mqtt_catalog(mosquitto.endpoint, {"client_id": "t-block", "qos": 1,
                                                "clean_start": False, "topics": TOPICS})
    topic = "plant9/line1/oven-02/temperature"
    pub = MqttPublisher(mosquitto.endpoint)
    with RunningSource(catalog, kafka_bootstrap, topics) as run:
        run.publisher.blocked = True  # type: ignore[attr-defined]
        assert run.wait(lambda: run.source.held and not run.source.connected, 10)
        seen = run.source.received
        for i in range(1, 101):
            pub.publish(topic, str(i))
        time.sleep(1.0)
        assert run.source.received == seen  # nothing read while blocked
        run.publisher.blocked = False  # type: ignore[attr-defined]
        got = readings_of(consume(kafka_bootstrap, topics.readings, count=100, timeout=30,
                                  settle=0.5))
        status = run.stop()
    pub.close()
    values = {int(r.value or 0) for r in got if r.tag.endswith("oven-02/temperature")}
    assert values == set(range(1, 101))
    assert status["connects"] >= 2 and status["dead_lettered"] == 0


def test_connects_in_a_process_with_more_than_1024_open_files(
        mosquitto: EmbeddedMosquitto, kafka_bootstrap: str, topics: Topics) -> None:
    """paho waits with select(), which cannot watch a descriptor numbered 1024 or higher: in
    a busy connector process the client closed every new connection before CONNECT, for
    ever and without a word. With the descriptors below 1100 taken, the source and the
    publisher get sockets above 1024 and must still connect and deliver."""
    taken = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        catalog = mqtt_catalog(mosquitto.endpoint, {"client_id": "t-many-fds", "topics": TOPICS})
        pub = MqttPublisher(mosquitto.endpoint)
        assert pub.client.socket().fileno() >= 1024  # type: ignore[union-attr]
        with RunningSource(catalog, kafka_bootstrap, topics) as run:
            assert run.source.connected, run.source.last_error
            pub.publish("plant9/line1/oven-01/temperature", "181.5")
            got = readings_of(consume(kafka_bootstrap, topics.readings, count=1, settle=0.5))
            run.stop()
        pub.close()
        assert [r.value for r in got] == [181.5]
    finally:
        for fd in taken:
            os.close(fd)
