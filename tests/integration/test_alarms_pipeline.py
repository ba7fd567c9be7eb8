"""Alarms end to end on the real session Kafka: a simulator fault raises one episode on the
right machine, it clears after the fault, operators act on it, and ClickHouse keeps it.
The worker is SIGKILLed after the acknowledgement was checkpointed: its successor knows the
episode and its acknowledgement from the checkpoint, and does not apply the ack again
(under both guarantees: exactly_once commits the action's offset in the checkpoint's
transaction).

The plant simulator's physics (with an injected overheat on compressor-01) is stepped
faster than real time and its readings, as the connectors would publish them, go onto the
readings topic; a real Faust worker and a real ClickHouse sink (chDB) run as subprocesses;
``millstream alarm ack`` and ``false-positive`` run as the operator would type them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from connectors.simulator.faults import FaultPlan
from connectors.simulator.plant import Plant
from millstream.bench.plant_replay import plant_frames
from millstream.query import endpoint_file_for, run_query
from schemas.alarms import Alarm
from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.status import read_status
from schemas.topics import Topics
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER = (
    "import sys; from pathlib import Path; from schemas.catalog import load_catalog; "
    "from schemas.topics import Topics; from streams.app import run_worker; "
    "run_worker(load_catalog(), bootstrap=sys.argv[1], topics=Topics(sys.argv[2]), "
    "app_id=sys.argv[3], status_file=Path(sys.argv[4]), guarantee=sys.argv[5])"
)
FAULT_START_S, FAULT_S, RUN_S = 60.0, 20.0, 160.0
SPEEDUP = 20.0  # simulated seconds per real second


class AlarmTopic:
    """Everything on the alarms topic so far, read incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                                  "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topic])
        self.records: list[Alarm] = []

    def until(self, cond: Any, timeout: float) -> list[Alarm]:
        deadline = time.monotonic() + timeout
        while not cond(self.records) and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() is not None:
                self.records.append(Alarm.decode(msg.value()))
        return self.records


def _alarm_cli(kafka_bootstrap: str, topics: Topics, tmp_path: Path, *args: str
               ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "MILLSTREAM_TOPIC_PREFIX": topics.prefix, "MILLSTREAM_COMMAND_SIGNER": "alice",
           "MILLSTREAM_DATA_DIR": str(tmp_path / "cli")}
    return subprocess.run([sys.executable, "-m", "millstream.cli", "alarm", *args],
                          capture_output=True, text=True, env=env, timeout=90, cwd=ROOT)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_fault_raises_one_episode_that_clears_and_operators_act_on_it(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path,
    guarantee: str
) -> None:
    machine = next(m for m in catalog.machines if m.name == "compressor-01")
    asset = catalog.machine_path(machine)
    plan = FaultPlan.parse([f"overheat@compressor-01:{FAULT_START_S:g}+{FAULT_S:g}"], catalog)
    t0 = now_ms() // 1000 * 1000 - int(RUN_S * 1000) - 60_000  # in the worker's past
    fault_start, fault_end = t0 + int(FAULT_START_S * 1000), t0 + int(
        (FAULT_START_S + FAULT_S) * 1000)
    app_id = f"test-{uuid.uuid4().hex[:8]}"

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", WORKER, kafka_bootstrap, topics.prefix, app_id,
                 str(tmp_path / f"{name}.json"), guarantee],
                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log, stderr=subprocess.STDOUT)

    def worker_log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]

    def status(name: str) -> dict[str, Any]:
        return read_status(tmp_path / f"{name}.json") or {}

    worker = start_worker("worker")
    sink = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json")
    alarms = AlarmTopic(kafka_bootstrap, topics.alarms)
    started = time.monotonic()
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        for _ts, frames in plant_frames(Plant(catalog, seed=13, faults=plan), RUN_S,
                                        t0_ms=t0):
            for f in frames:  # one partition: the sources advance together, none idles
                p.produce(topics.readings, f.encode(), f.key(), partition=0)
            p.poll(0)
            time.sleep(0.5 / SPEEDUP)
        assert p.flush(30) == 0

        def cleared(rs: list[Alarm]) -> bool:
            return any(r.asset == asset and r.action in ("cleared", "closed") for r in rs)

        records = alarms.until(cleared, timeout=120)
        episodes: dict[str, list[Alarm]] = defaultdict(list)
        for r in records:
            episodes[r.alarm_id].append(r)
        assert len(episodes) == 1, "\n".join(  # a str: pytest shows all of it
            [*(f"{r.asset} {r.action} {r.message}" for r in records),
             json.dumps(status("worker")), worker_log("worker")])
        [(alarm_id, history)] = episodes.items()
        raised, last = history[0], history[-1]
        assert (raised.asset, raised.action, raised.state) == (asset, "raised", "active")
        assert f"{asset}/discharge_temp" in raised.tags, raised
        assert fault_start - 5_000 <= raised.started_at <= fault_start + 10_000
        assert (last.action, last.state, last.active) == ("cleared", "cleared", False)
        assert last.ended_at is not None and fault_end <= last.ended_at <= fault_end + 30_000
        assert [r.version for r in history] == list(range(1, len(history) + 1))
        print(f"\nalarms: fault {FAULT_S:g} s at {FAULT_START_S:g} s -> raised "
              f"{(raised.started_at - fault_start) / 1000:+.0f} s, last anomalous window "
              f"{(last.ended_at - fault_end) / 1000:+.0f} s after the fault's end; fed and "
              f"cleared in {time.monotonic() - started:.0f} s")

        ack = _alarm_cli(kafka_bootstrap, topics, tmp_path, "ack", alarm_id, "--note", "seen")
        assert ack.returncode == 0, ack.stderr
        acked = json.loads(ack.stdout)
        assert (acked["state"], acked["action"], acked["actor"], acked["note"]) == (
            "closed", "acknowledged", "alice", "seen")
        # the ack is in the next checkpoint, with the action topic's offset; then a crash
        saved = status("worker").get("checkpoints", 0)
        wait_for(lambda: status("worker").get("checkpoints", 0) > saved, 30,
                 "a checkpoint after the ack")
        worker.kill()
        worker.communicate(timeout=30)
        worker = start_worker("successor")
        wait_for(lambda: status("successor").get("partitions") == [0, 1, 2]
                 and status("successor").get("restored", 0) >= 1, 90,
                 "the successor holding the partitions, restored from their checkpoints")
        # a worker that just joined the group may take a while to fetch: wait longer
        fp = _alarm_cli(kafka_bootstrap, topics, tmp_path, "false-positive", alarm_id,
                        "--wait", "45")
        assert fp.returncode == 0, "\n".join(
            [fp.stderr, json.dumps(status("successor")), worker_log("successor")])
        assert json.loads(fp.stdout)["action"] == "false-positive"
        gone = _alarm_cli(kafka_bootstrap, topics, tmp_path, "ack", "no-such-alarm")
        assert gone.returncode != 0 and "no-such-alarm" in gone.stderr

        endpoint = endpoint_file_for(chdb_dsn)
        assert endpoint is not None

        def q(sql: str) -> list[list[Any]]:
            return run_query(chdb_dsn, sql, endpoint).rows

        wait_for(endpoint.exists, 60, "the sink's query endpoint")
        wait_for(lambda: q(f"SELECT count() FROM alarm_log WHERE alarm_id = '{alarm_id}'")
                 [0][0] >= len(history) + 2, 60, "every state change in alarm_log")
        assert q(f"SELECT state, version, actor FROM alarms FINAL "
                 f"WHERE alarm_id = '{alarm_id}'") == [["closed", len(history) + 2, "alice"]]
        log = q(f"SELECT action, actor FROM alarm_log FINAL WHERE alarm_id = '{alarm_id}' "
                "ORDER BY version")
        assert log[0] == ["raised", "streams"] and log[-2:] == [
            ["acknowledged", "alice"], ["false-positive", "alice"]]
        assert q(f"SELECT count() FROM anomalies WHERE asset = '{asset}' "
                 f"AND has(tags, '{asset}/discharge_temp')")[0][0] > 0
    finally:
        alarms.consumer.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
        stop_sink(sink)
        shutil.rmtree(Path(tempfile.gettempdir()) / f"faust-{app_id}", ignore_errors=True)
