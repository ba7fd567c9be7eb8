"""The digital twin and the KPIs on the real Kafka, with two workers, into chDB.

Four minutes of recorded readings (2025-03-03 05:58-06:02 UTC, across the end of the
shipped calendar's night shift) for the four machines, an alarm and a command result go
in; the compacted twin topic read from the beginning gives each machine's current state,
each machine's records come from the one worker that owns its twin-inputs partition, the
night shift's KPIs are final, and the ClickHouse tables twin and kpis get the rows.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, Producer

from millstream.query import QueryError, endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.events import CommandResult
from schemas.kpis import KpiRecord
from schemas.readings import FrameBuilder
from schemas.status import read_status
from schemas.topics import Topics
from schemas.twin import TwinRecord
from sinks.chclient import open_client
from streams.twin_merge import TwinMerger
from streams.twin_seed import read_compacted, read_twins
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for
from tests.integration.test_streams_worker import ROOT, WORKER

pytestmark = pytest.mark.integration

T = int(datetime(2025, 3, 3, 5, 58, tzinfo=UTC).timestamp() * 1000)
SHIFT_END = T + 120_000  # the night shift ends at 06:00
P = "acme/plant1"
CNC, PRESS = f"{P}/machining/line1/cnc-01", f"{P}/forming/line2/press-01"
C1, C2 = f"{P}/utilities/air/compressor-01", f"{P}/utilities/air/compressor-02"
KW_PER_A = math.sqrt(3) * 400 * 0.85 / 1000  # the catalog's three-phase 400 V, pf 0.85


def tick_values(k: int) -> dict[str, dict[str, float]]:
    """What each machine reads at T + 5 s * k."""
    return {
        CNC: {"running": 1, "fault": 0, "part_count": 100 + k, "reject_count": 5 + k // 10,
              "motor_current": 30.0, "spindle_temp": 60.0},
        C1: {"running": 1, "fault": float(k >= 36), "motor_current": 50.0},
        PRESS: {"running": 1, "fault": 0, "stroke_count": 1000 + k, "reject_count": 0,
                "motor_current": 40.0},
        C2: {"running": 0, "fault": 0, "motor_current": 10.0},
    }


def produce_day(bootstrap: str, topics: Topics, catalog: Catalog) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    builders = {s.name: FrameBuilder(s.name, epoch=1) for s in catalog.sources}
    for k in range(49):  # 05:58:00 .. 06:02:00 every 5 s
        for machine, values in tick_values(k).items():
            source = catalog.info(f"{machine}/running").source.name
            for name, v in values.items():
                builders[source].add(f"{machine}/{name}", T + 5000 * k, float(v))
        for source, fb in builders.items():
            frame = fb.flush()
            assert frame is not None
            p.produce(topics.readings, key=source.encode(), value=frame.encode())
    alarm = {"schema": "millstream.alarms.v1", "alarm_id": "al-1", "asset": CNC,
             "tags": [f"{CNC}/spindle_temp"], "severity": "high", "state": "active",
             "message": "spindle too hot", "started_at": T, "ended_at": None,
             "updated_at": T, "version": 1, "active": True, "acknowledged": False,
             "action": "raised", "actor": "streams", "note": "", "score": 2.0,
             "detectors": ["sad"], "shelved_until": None}
    p.produce(topics.alarms, key=CNC.encode(), value=json.dumps(alarm).encode())
    p.produce(topics.alarms, key=CNC.encode(), value=b"{broken")  # a dead letter
    result = CommandResult("c-1", f"{CNC}/spindle_speed_sp", 5000.0, 5000.0, "applied",
                           "written, read back", T + 1000)
    p.produce(topics.command_results, key=b"c-1", value=result.encode())
    assert p.flush(30) == 0


def start_worker(bootstrap: str, topics: Topics, app_id: str, status: Path,
                 cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, bootstrap, topics.prefix, app_id, str(status)],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def twin_status(path: Path) -> dict[str, Any]:
    doc = read_status(path) or {}
    twin: dict[str, Any] = doc.get("twin") or {}
    return twin


def owners_settled(paths: list[Path]) -> bool:
    """Both workers merge twins, their twin-inputs partitions disjoint and complete."""
    parts = [twin_status(p).get("partitions") or [] for p in paths]
    return all(parts) and sorted(p for ps in parts for p in ps) == [0, 1, 2]


def consume_twins(bootstrap: str, topic: str, until: float) -> list[tuple[str, str, bytes]]:
    """(machine, worker header, value) of every twin record so far."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.subscribe([topic])
    out: list[tuple[str, str, bytes]] = []
    try:
        while time.monotonic() < until:
            msg = c.poll(0.3)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                break
            headers: dict[str, Any] = dict(msg.headers() or [])
            out.append(((msg.key() or b"").decode(), bytes(headers["millstream-worker"]).decode(),
                        msg.value() or b""))
    finally:
        c.close()
    return out


def test_twin_and_kpis_with_two_workers(kafka_bootstrap: str, topics: Topics,
                                        catalog: Catalog, tmp_path: Path, chdb_dsn: str) -> None:
    app_id = f"twin-{uuid.uuid4().hex[:8]}"
    status = [tmp_path / "w1.json", tmp_path / "w2.json"]
    workers = [start_worker(kafka_bootstrap, topics, app_id, s, tmp_path) for s in status]
    try:
        wait_for(lambda: owners_settled(status), 120, "two workers sharing the twin-inputs")
        time.sleep(3)  # no rebalance under way any more
        assert owners_settled(status)
        produce_day(kafka_bootstrap, topics, catalog)
        want = {CNC: "running", PRESS: "running", C1: "fault", C2: "idle"}
        deadline = time.monotonic() + 90
        while True:
            latest = {k.decode(): TwinRecord.decode(v) for k, v in
                      read_compacted(kafka_bootstrap, topics.twin).items()}
            cnc = latest.get(CNC)
            done = ({m: r.state for m, r in latest.items()} == want and cnc is not None
                    and cnc.alarms and cnc.last_command is not None
                    and all(r.tags.get("running") and r.tags["running"].ts == T + 240_000
                            for r in latest.values()))
            if done or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert {m: r.state for m, r in latest.items()} == want
        assert cnc is not None and [a.alarm_id for a in cnc.alarms] == ["al-1"]
        assert cnc.last_command is not None and cnc.last_command.command_id == "c-1"
        assert cnc.tags["part_count"].value == 148 and cnc.tags["spindle_temp"].unit == "degC"
        assert latest[C1].state_since == T + 180_000
        # what a restarted worker seeds its merger with: the alarm and the command survive
        merger = TwinMerger(catalog)
        assert merger.seed(read_twins(kafka_bootstrap, topics.twin)) == 4
        assert [a.alarm_id for a in merger.twins[CNC].record.alarms] == ["al-1"]

        # each machine's twin is merged by the one worker that owns its partition
        owner = {p: twin_status(s)["worker"] for s in status
                 for p in twin_status(s)["partitions"]}
        by_machine: dict[str, set[str]] = {}
        for machine, worker, _ in consume_twins(kafka_bootstrap, topics.twin,
                                                time.monotonic() + 30):
            by_machine.setdefault(machine, set()).add(worker)
        for machine, workers_seen in by_machine.items():
            assert workers_seen == {owner[(murmur2(machine.encode()) & 0x7FFFFFFF) % 3]}

        def night_finals() -> dict[str, KpiRecord]:
            records = [KpiRecord.decode(v) for v in _values(kafka_bootstrap, topics.kpis)]
            return {r.machine: r for r in records if r.final and r.shift == "night"}
        wait_for(lambda: set(night_finals()) == set(want), 60, "the night shift's final KPIs")
        night = night_finals()
        n = night[CNC]
        # 05:58 to 06:00 running, the rest of the 8 h shift unknown (no data)
        assert (n.run_s, n.planned_s, n.unknown_s, n.availability) == (120, 120, 28680, 1)
        # parts: +1 per reading 05:58:05 .. 05:59:55 (23); rejects +1 at 05:58:50, 05:59:40
        assert (n.parts, n.rejects, n.performance) == (23, 2, pytest.approx(23 * 30 / 120))
        assert n.kwh == pytest.approx(30 * KW_PER_A * 120 / 3600, abs=1e-6)
        assert night[C2].idle_s == 120 and night[C2].availability == 0 and night[C2].oee == 0
        assert night[C1].oee is None and night[C1].performance is None  # no parts counter
        dead = _values(kafka_bootstrap, topics.deadletter)
        assert any(json.loads(d)["reason"] == "not-json" for d in dead)
    finally:
        outputs = [_stop(w) for w in workers]
        shutil.rmtree(Path(tempfile.gettempdir()) / f"faust-{app_id}", ignore_errors=True)
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0 and "Traceback" not in out, out[-3000:]

    def stored() -> bool:
        try:
            twins = run_query(chdb_dsn, "SELECT count() FROM twin FINAL").rows
            finals = run_query(chdb_dsn, "SELECT count() FROM kpis FINAL WHERE final "
                                         "AND shift = 'night'").rows
        except QueryError:  # not migrated yet
            return False
        return twins[0][0] == 4 and finals[0][0] == 4

    endpoint = endpoint_file_for(chdb_dsn)
    assert endpoint is not None

    sink = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json", batch_rows=10)
    try:
        wait_for(endpoint.exists, 60, "the sink's query server")
        wait_for(stored, 90, "the twin and kpis tables to get their rows")
    finally:
        stop_sink(sink)
    client = open_client(chdb_dsn)
    try:
        rows = client.query("SELECT machine, state, tag_values['part_count'], alarms_active, "
                            "last_command_status FROM twin FINAL ORDER BY machine").result_rows
        assert {r[0]: r[1] for r in rows} == want
        assert [tuple(r[2:]) for r in rows if r[0] == CNC] == [(148.0, 1, "applied")]
        got = client.query("SELECT machine, run_s, parts, kwh FROM kpis FINAL WHERE final AND "
                           "shift = 'night'").result_rows
        assert {r[0]: (r[1], r[2]) for r in got}[CNC] == (120.0, 23.0)
    finally:
        client.close()


def _values(bootstrap: str, topic: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.3)
            if msg is None:
                continue
            if msg.error() is not None:
                break
            out.append(msg.value() or b"")
    finally:
        c.close()
    return out


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")
