"""The health endpoints and the metrics of one stage, served for real on a loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from schemas.health import HealthConfig, HealthError, KafkaProbe, StageHealth
from schemas.metrics import METRICS, STAGES, samples
from tests.support.scrape import get, scrape, value

CONNECTOR_DOC: dict[str, Any] = {
    "source": "press-gw", "protocol": "modbus", "produced": 120, "delivered": 100,
    "failed": 5, "connected": True, "errors": 2, "last_error": None, "running": True,
    "spool": {"bytes": 4096, "readings": 15, "oldest_age_s": 1.5, "dropped_readings": 3},
}


def _ready(doc: Mapping[str, Any]) -> str | None:
    return None if doc.get("connected") else "not connected to press-gw"


@pytest.fixture
def health() -> Iterator[StageHealth]:
    h = StageHealth("connector", HealthConfig(port=0), ready=_ready,
                    context={"source": "press-gw"})
    h.start()
    yield h
    h.stop()


def test_not_ready_until_the_stage_reports_then_ready(health: StageHealth) -> None:
    assert health.url is not None
    assert get(health.url + "/healthz")[0] == 200
    code, body = get(health.url + "/readyz")
    assert code == 503 and body["ready"] is False and "not reported yet" in body["reason"]
    doc = health.report(dict(CONNECTOR_DOC))
    assert doc["metrics_url"] == health.url and doc["stage"] == "connector"
    code, body = get(health.url + "/readyz")
    assert (code, body["ready"], body["checks"]) == (200, True, {"stage": "ok",
                                                                 "dependency": "ok"})
    assert get(health.url + "/status") == (200, doc)


def test_a_lost_device_makes_it_not_ready_with_the_reason(health: StageHealth) -> None:
    assert health.url is not None
    health.report({**CONNECTOR_DOC, "connected": False})
    code, body = get(health.url + "/readyz")
    assert code == 503 and body["reason"] == "not connected to press-gw"
    assert get(health.url + "/healthz")[0] == 200  # alive all the same


def test_metrics_carry_the_status_counters_with_stage_and_source(health: StageHealth) -> None:
    assert health.url is not None
    health.report(dict(CONNECTOR_DOC))
    health.observe_frame(100, "press-gw")
    health.observe_frame(20, "press-gw")
    health.observe_insert("readings", 10, 0.1)  # not a connector's histogram: ignored
    m = scrape(health.url)
    src = {"stage": "connector", "source": "press-gw"}
    assert value(m, "millstream_readings_in_total", **src) == 120
    assert value(m, "millstream_readings_out_total", **src) == 100
    assert value(m, "millstream_readings_failed_total", **src) == 5
    assert value(m, "millstream_readings_pending", **src) == 15
    assert value(m, "millstream_errors_total", kind="device", **src) == 2
    assert value(m, "millstream_connector_connected", **src) == 1
    assert value(m, "millstream_spool_bytes", **src) == 4096
    assert value(m, "millstream_spool_dropped_readings_total", **src) == 3
    assert value(m, "millstream_frame_readings_count", **src) == 2
    assert value(m, "millstream_frame_readings_sum", **src) == 120
    assert value(m, "millstream_frame_readings_bucket", le="50.0", **src) == 1
    assert abs(value(m, "millstream_last_report_timestamp_seconds") - time.time()) < 60
    assert not [k for k in m if k[0].startswith("millstream_insert")]
    assert value(m, "process_resident_memory_bytes") > 0
    health.report({**CONNECTOR_DOC, "produced": 150})
    assert value(scrape(health.url), "millstream_readings_in_total", **src) == 150


def test_a_stuck_loop_fails_readiness_then_liveness() -> None:
    h = StageHealth("sink", HealthConfig(port=0), stale_s=0.2, stall_s=0.4)
    with h:
        assert h.url is not None
        h.report({"inserted": {}, "running": True})
        assert get(h.url + "/readyz")[0] == 200
        time.sleep(0.3)
        code, body = get(h.url + "/readyz")
        assert code == 503 and "has not reported for" in body["reason"]
        assert get(h.url + "/healthz")[0] == 200
        time.sleep(0.2)
        code, body = get(h.url + "/healthz")
        assert code == 503 and "stuck" in body["reason"] and body["alive"] is False


def test_a_stopping_stage_is_not_ready() -> None:
    with StageHealth("streams", HealthConfig(port=0)) as h:
        assert h.url is not None
        h.report({"readings": 1, "running": False})
        code, body = get(h.url + "/readyz")
        assert code == 503 and body["reason"] == "the streams is stopping"


def test_unknown_path_is_404_and_names_the_paths(health: StageHealth) -> None:
    assert health.url is not None
    code, body = get(health.url + "/nope")
    assert code == 404 and "/metrics" in body["reason"]


def test_no_port_serves_nothing_and_a_taken_port_is_a_clear_error() -> None:
    quiet = StageHealth("executor")
    assert quiet.start() is None and quiet.report({"received": 1}).get("metrics_url") is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        h = StageHealth("executor", HealthConfig(port=port))
        with pytest.raises(HealthError, match=f"127.0.0.1:{port}.*MILLSTREAM_METRICS_PORT"):
            h.start()


def test_kafka_away_is_named_in_readiness() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once closed
    probe = KafkaProbe(f"127.0.0.1:{port}", timeout_s=0.5)
    with StageHealth("executor", HealthConfig(port=0), kafka=probe) as h:
        assert h.url is not None
        h.report({"received": 0})
        code, body = get(h.url + "/readyz")
    assert code == 503 and body["checks"]["stage"] == "ok"
    assert f"Kafka at 127.0.0.1:{port} did not answer" in body["reason"]


def test_every_stage_maps_its_status_document_onto_catalogued_metrics() -> None:
    docs: dict[str, dict[str, Any]] = {
        "connector": CONNECTOR_DOC,
        "streams": {"readings": 10, "frames": 2, "late": 1, "duplicates": 0, "deadletters": 1,
                    "aggregates": 4, "anomalies": 1, "commands": 1, "alarms_raised": 0,
                    "dead_readings": {"unknown-tag": 3}, "open_windows": 7, "lag": 5},
        "sink": {"inserted": {"readings": 10, "aggregates": 4}, "consumed": 6, "lag": 0,
                 "redelivered": 0, "deadlettered": 1, "insert_errors": 2,
                 "deadletter_errors": 0, "pending_rows": 3, "paused": False},
        "executor": {"received": 3, "applied": 1, "rejected": 1, "failed": 0, "dry-run": 0,
                     "pending": 1, "deadlettered": 0, "kill_switches": ["cnc-01"], "lag": 0},
        "dashboard": {"consumed": {"p.twin": 5, "p.alarms": 2}, "invalid": {"p.twin": 1},
                      "lag": 0, "clients": 2},
    }
    names = {m.name: m for m in METRICS}
    served: set[str] = set()
    for stage in STAGES:
        for name, labels, _v in samples(stage, docs[stage], {"topic": "t"}, 1.0):
            m = names[name]  # KeyError: a metric not in the catalog
            assert stage in m.stages, (name, stage)
            assert set(labels) <= set(m.labels), (name, labels)
            served.add(name)
    hist = {m.name for m in METRICS if m.kind == "histogram"}
    assert served | hist == set(names)  # every catalogued metric is served by some stage
    by = {(n, tuple(sorted(ls.items()))): v for n, ls, v in samples("executor",
                                                                   docs["executor"])}
    assert by[("millstream_kill_switches_active", (("stage", "executor"),))] == 1
    assert by[("millstream_commands_total", (("stage", "executor"), ("verdict", "pending")))] == 1
    dash = {(n, tuple(sorted(ls.items()))): v for n, ls, v in samples("dashboard",
                                                                     docs["dashboard"])}
    in_twin = ("millstream_messages_in_total", (("stage", "dashboard"), ("topic", "p.twin")))
    assert dash[in_twin] == 5
    assert dash[("millstream_errors_total", (("kind", "decode"), ("source", "p.twin"),
                                             ("stage", "dashboard")))] == 1
    assert dash[("millstream_dashboard_clients", (("stage", "dashboard"),))] == 2
