"""The whole pipeline on the real local stack, for about 30 s, then checked in ClickHouse.

One run (module fixture) of ``run_demo``: Kafka (session broker), the demo's own
Mosquitto, the plant simulator (OPC-UA + Modbus servers, a Sparkplug B edge node), the
three connectors, a Faust worker, the ClickHouse sink (chDB) and the command executor,
each in its own process, with an overheat injected after the detector's warm-up.
Before it starts, a malformed message and a frame with an unknown tag are put on the
readings topic: they must end up in the dead-letter table, not crash anything.
Meanwhile a watcher scrapes every stage's health endpoints and runs ``millstream status``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from millstream.demo import DemoOptions, run_demo
from millstream.query import endpoint_file_for, run_query
from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics
from schemas.catalog import Catalog
from schemas.readings import FrameBuilder
from schemas.status import read_status
from schemas.topics import Topics
from tests.support import scrape as prom
from tests.support.stage_watch import StageWatch

pytestmark = pytest.mark.integration

# after the detectors' warm-up on the shipped plant (10 windows, and 10 of threshold
# history), counted from the simulator's start: the connectors join a few seconds later
FAULT_AT_S = 28
UNKNOWN_TAG = "acme/plant1/nowhere/line9/ghost-01/temp"
SOURCES = {"opcua-sim", "modbus-sim", "sparkplug-sim"}


class Run:
    def __init__(self, summary: dict[str, Any], dsn: str,
                 live: dict[str, subprocess.CompletedProcess[str]], run_dir: Path,
                 stages: StageWatch, prefix: str) -> None:
        self.summary = summary
        self.prefix = prefix
        self.stages = stages  # what the health endpoints and `millstream status` said
        self.dsn = dsn
        self.run_dir = run_dir
        self.live = live  # `millstream query` runs made from "a second terminal" mid-run

    def rows(self, sql: str) -> list[list[Any]]:
        return [list(r) for r in run_query(self.dsn, sql, endpoint_file_for(self.dsn)).rows]


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    data: Path = tmp_path_factory.mktemp("pipeline")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=data,
                        topic_prefix=f"pipe-{uuid.uuid4().hex[:8]}", dashboard_port=0)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_bootstrap, topics)
    bad = FrameBuilder("intruder", 1)
    bad.add(UNKNOWN_TAG, 1_700_000_000_000, 1.0)
    frame = bad.flush()
    assert frame is not None
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    p.produce(topics.readings, b"{this is not json", key=b"intruder")
    p.produce(topics.readings, frame.encode(), key=frame.key())
    assert p.flush(10) == 0
    live: dict[str, subprocess.CompletedProcess[str]] = {}
    watcher = threading.Thread(target=_query_while_running, args=(data, live), daemon=True)
    watcher.start()
    stages = StageWatch(data / "run", {f"source-{s}" for s in SOURCES}
                        | {"worker", "sink", "executor", "dashboard"})
    stages.start()
    summary = run_demo(settings, DemoOptions(
        duration=46, seed=11, faults=[f"overheat@cnc-01:{FAULT_AT_S}+60"], run_dir=data / "run"))
    watcher.join(5)
    stages.join(10)
    yield Run(summary, settings.dsn, live, data / "run", stages, settings.topic_prefix)


def _query_while_running(data: Path, out: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """Like an analyst in a second terminal: `millstream query` while the sink owns chDB."""
    endpoint = endpoint_file_for(f"chdb://{data / 'chdb'}")
    assert endpoint is not None
    deadline = time.monotonic() + 40
    while not endpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # some data in
    env = {**os.environ, "MILLSTREAM_DATA_DIR": str(data)}
    for fmt in ("json", "csv", "table"):
        out[fmt] = subprocess.run(
            [sys.executable, "-m", "millstream.cli", "query", "--format", fmt,
             "SELECT source, count() AS n FROM readings GROUP BY source ORDER BY source"],
            capture_output=True, text=True, env=env, timeout=60)


def test_summary_counts_everything_and_loses_nothing(run: Run) -> None:
    s = run.summary
    assert s["readings_produced"] > 3000, s  # ~20 OPC-UA tags at 10/s + Modbus at 5/s
    assert s["readings_in_clickhouse"] == s["readings_produced"]
    assert s["lost"] == 0 and s["duplicates"] == 0
    assert set(s["readings_by_source"]) == SOURCES, s
    assert sum(s["readings_by_source"].values()) == s["readings_in_clickhouse"]
    for key in ("aggregates", "anomalies", "commands_executed"):
        assert s[key] > 0, (key, s)


def test_every_reading_is_stored_exactly_once_by_sequence_number(run: Run) -> None:
    per_source = run.rows(
        "SELECT source, epoch, count(), uniqExact(seq), min(seq), max(seq) "
        "FROM readings FINAL WHERE source != 'intruder' GROUP BY source, epoch")
    assert {r[0] for r in per_source} == SOURCES
    for source, _epoch, rows, distinct, lo, hi in per_source:
        assert lo == 1, source
        assert rows == distinct == hi, (source, rows, distinct, hi)  # 1..hi, no gap, no dup
    assert sum(r[2] for r in per_source) == run.summary["readings_produced"]


def test_the_sparkplug_machine_arrives_whole_through_mosquitto(run: Run, catalog: Catalog) -> None:
    """compressor-02: simulator edge node -> Mosquitto -> MQTT connector -> Kafka -> ClickHouse."""
    status = read_status(run.run_dir / "source-sparkplug-sim.json")
    assert status is not None
    produced, epoch = int(status["produced"]), int(status["epoch"])
    assert status["sparkplug"]["births"] >= 2, status  # NBIRTH + DBIRTH
    assert status["dead_lettered"] == 0 and status["sparkplug"]["seq_gaps"] == 0, status
    stored = run.rows(f"SELECT count(), uniqExact(seq), min(seq), max(seq) FROM readings FINAL "
                      f"WHERE source = 'sparkplug-sim' AND epoch = {epoch}")[0]
    assert produced > 500 and stored == [produced, produced, 1, produced], (produced, stored)
    assert run.summary["readings_by_source"]["sparkplug-sim"] == produced
    machine = next(m for m in catalog.machines if m.name == "compressor-02")
    tags = run.rows("SELECT tag, count(), countIf(quality = 0), avg(value), any(unit) "
                    "FROM readings FINAL WHERE source = 'sparkplug-sim' GROUP BY tag")
    by_tag = {t[0].rsplit("/", 1)[1]: t[1:] for t in tags}
    assert set(by_tag) == {t.name for t in machine.tags}  # the birth carries every tag
    assert all(n == good for n, good, _avg, _unit in by_tag.values())
    assert by_tag["discharge_pressure"][0] > 50  # ~5/s reported by exception
    assert abs(by_tag["discharge_pressure"][2] - 7.5) < 0.3  # at the catalog's setpoint
    assert by_tag["discharge_pressure"][3] == "bar"
    aggregates = run.rows("SELECT count() FROM aggregates FINAL WHERE tag = "
                          f"'{catalog.resolve('compressor-02/discharge_temp')}'")
    assert aggregates[0][0] >= 20


def _ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value)).timestamp() * 1000)


def test_aggregates_agree_with_a_recomputation_from_stored_readings(
        run: Run, catalog: Catalog) -> None:
    specs = catalog.streams.window_specs()
    readings = run.rows(
        "SELECT tag, toUnixTimestamp64Milli(ts), value, seq, quality FROM readings FINAL "
        "WHERE source != 'intruder' ORDER BY tag, ts, seq")
    groups: dict[tuple[str, int, int], list[float]] = defaultdict(list)  # size, start
    totals: dict[tuple[str, int, int], list[int]] = defaultdict(list)  # qualities
    for tag, ts, value, _seq, quality in readings:
        for spec in specs:
            pane = ts - ts % spec.pane_ms
            for start in range(pane - spec.size_ms + spec.pane_ms, pane + 1, spec.pane_ms):
                totals[(tag, spec.size_ms, start)].append(quality)
                if quality != 2 and value is not None:
                    groups[(tag, spec.size_ms, start)].append(float(value))
    aggregates = run.rows(
        "SELECT tag, window_ms, toUnixTimestamp64Milli(window_start), "
        "toUnixTimestamp64Milli(window_end), count, min, max, mean, std, first, last, "
        "good_share FROM aggregates FINAL")
    assert len(aggregates) > 100
    assert {a[1] for a in aggregates} == {s.size_ms for s in specs}  # every size published
    last_closed: dict[tuple[str, int], int] = defaultdict(int)
    for tag, size, start, end, count, lo, hi, mean, std, first, last, good in aggregates:
        assert end - start == size
        values = groups[(tag, size, start)]
        assert count == len(values), (tag, size, start)
        assert (lo, hi, first, last) == (min(values), max(values), values[0], values[-1])
        m = sum(values) / len(values)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
        assert math.isclose(mean, m, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(std, sd, rel_tol=1e-6, abs_tol=1e-6)
        qualities = totals[(tag, size, start)]
        assert math.isclose(good, qualities.count(0) / len(qualities)), (tag, size, start)
        last_closed[(tag, size)] = max(last_closed[(tag, size)], start)
    # no window skipped: every window with readings, up to the last one closed, has a row
    have = {(a[0], a[1], a[2]) for a in aggregates}
    missing = [k for k in groups if k[2] <= last_closed.get((k[0], k[1]), -1) and k not in have]
    assert not missing, missing[:5]


def test_injected_overheat_produces_an_anomaly_and_a_command(run: Run, catalog: Catalog) -> None:
    temp = catalog.resolve("cnc-01/spindle_temp")
    anomalies = run.rows(f"SELECT feature, score, threshold FROM anomalies FINAL "
                         f"WHERE tag = '{temp}'")
    assert anomalies, "the overheat produced no anomaly on spindle_temp"
    assert all(score > threshold for _f, score, threshold in anomalies)
    commands = run.rows("SELECT rule, setpoint, value, reason FROM commands FINAL")
    assert ["spindle-overheat", catalog.resolve("cnc-01/spindle_speed_sp"), 5000.0] in [
        c[:3] for c in commands]


def test_the_overheat_raises_one_alarm_episode_on_the_cnc(run: Run, catalog: Catalog) -> None:
    cnc = catalog.machine_path(next(m for m in catalog.machines if m.name == "cnc-01"))
    episodes = run.rows(f"SELECT alarm_id, state, severity, message FROM alarms FINAL "
                        f"WHERE asset = '{cnc}'")
    assert len(episodes) == 1, episodes
    assert run.summary["alarms_by_machine"].get("cnc-01") == 1, run.summary
    log = run.rows(f"SELECT action, actor FROM alarm_log FINAL "
                   f"WHERE alarm_id = '{episodes[0][0]}' ORDER BY version")
    assert log[0] == ["raised", "streams"]


def test_the_summary_reports_the_control_charts(run: Run, catalog: Catalog) -> None:
    rows = run.rows("SELECT rule, uniqExact(violation_id) FROM spc_violations GROUP BY rule")
    assert run.summary["spc_violations_by_rule"] == {r: int(n) for r, n in rows}, run.summary
    assert run.summary["spc_violations"] == sum(int(n) for _, n in rows)
    charted = {"/".join(catalog.resolve(c.tag).split("/")[-2:])
               for c in catalog.spc.characteristics}
    assert set(run.summary["spc_cpk"]) <= charted


def test_the_command_reached_the_simulator_and_was_read_back(run: Run, catalog: Catalog) -> None:
    sp = catalog.resolve("cnc-01/spindle_speed_sp")
    results = run.rows(f"SELECT status, readback, requested FROM command_results FINAL "
                       f"WHERE setpoint = '{sp}'")
    assert ["applied", 5000.0, 5000.0] in results
    # and independently of the executor: the connector saw the setpoint change on the device
    seen = run.rows(f"SELECT count() FROM readings FINAL WHERE tag = '{sp}' AND value = 5000")
    assert seen[0][0] >= 1
    audit = run.rows("SELECT command_id, status FROM command_audit WHERE rule = 'spindle-overheat'")
    assert any(status == "applied" for _id, status in audit)


def test_bad_input_is_dead_lettered_with_its_reason_not_dropped(run: Run) -> None:
    letters = run.rows("SELECT stage, reason, detail FROM deadletter FINAL")
    by_stage = defaultdict(set)
    for stage, reason, _detail in letters:
        by_stage[stage].add(reason)
    for stage in ("streams", "sink"):
        assert {"not-json", "unknown-tag"} <= by_stage[stage], (stage, letters)
    assert any(UNKNOWN_TAG in d for _s, r, d in letters if r == "unknown-tag")
    stored = run.rows(f"SELECT count() FROM readings WHERE tag = '{UNKNOWN_TAG}'")
    assert stored[0][0] == 0


def test_query_works_from_a_second_process_while_the_demo_runs(run: Run) -> None:
    for fmt, proc in run.live.items():
        assert proc.returncode == 0, (fmt, proc.stderr)
    rows = json.loads(run.live["json"].stdout)
    assert [r["source"] for r in rows] == sorted(SOURCES)
    assert all(int(r["n"]) > 0 for r in rows)
    csv_lines = run.live["csv"].stdout.strip().splitlines()
    assert csv_lines[0].replace('"', "") == "source,n" and len(csv_lines) == 4
    assert "opcua-sim" in run.live["table"].stdout


def test_every_stage_was_alive_and_ready_and_its_metrics_moved(run: Run) -> None:
    w = run.stages
    assert not w.problems, w.problems
    assert set(w.alive.values()) == {200}, w.alive
    assert {n: code for n, (code, _body) in w.ready.items()} == dict.fromkeys(w.urls, 200), w.ready
    assert set(w.last) == set(w.urls), "a stage never answered after the first scrape"
    for name in w.urls:  # each stage's own loop kept reporting
        assert prom.value(w.last[name], "millstream_last_report_timestamp_seconds") > prom.value(
            w.first[name], "millstream_last_report_timestamp_seconds"), name

    def moved(name: str, metric: str, **labels: str) -> bool:
        before, after = w.first[name], w.last[name]
        return prom.value(after, metric, **labels) > prom.value(before, metric, **labels)

    for source in SOURCES:
        src = {"stage": "connector", "source": source}
        for metric in ("millstream_readings_in_total", "millstream_readings_out_total",
                       "millstream_frame_readings_count"):
            assert moved(f"source-{source}", metric, **src), (source, metric)
        assert prom.value(w.last[f"source-{source}"], "millstream_connector_connected", **src) == 1
    for metric in ("millstream_readings_in_total", "millstream_aggregates_total",
                   "millstream_frame_readings_count", "millstream_process_seconds_count"):
        assert moved("worker", metric, stage="streams"), metric
    assert moved("sink", "millstream_rows_inserted_total", table="readings")
    assert moved("sink", "millstream_insert_seconds_count", table="readings")
    assert prom.value(w.last["sink"], "millstream_consumer_lag_messages", stage="sink") >= 0
    assert prom.value(w.last["executor"], "millstream_commands_total", verdict="applied") >= 1
    assert prom.value(w.last["executor"], "millstream_process_seconds_count") >= 1
    assert moved("dashboard", "millstream_messages_in_total", stage="dashboard",
                 topic=f"{run.prefix}.aggregates")


def test_millstream_status_showed_every_stage_up_with_rates(run: Run) -> None:
    doc = run.stages.status_doc()
    by_name = {s["name"]: s for s in doc["stages"]}
    assert set(by_name) == {f"connect {s}" for s in SOURCES} | {"worker", "sink", "executor",
                                                                "dashboard"}
    assert {s["state"] for s in doc["stages"]} == {"up"}, doc
    for source in SOURCES:
        assert by_name[f"connect {source}"]["in_per_s"] > 0, by_name[f"connect {source}"]
    assert by_name["worker"]["in_per_s"] > 0 and by_name["sink"]["out_per_s"] > 0
    for name in ("worker", "sink", "executor", "dashboard"):
        assert isinstance(by_name[name]["lag"], int), by_name[name]
    assert by_name["dashboard"]["in_per_s"] > 0, by_name["dashboard"]  # aggregates it follows
