"""The control path against the real Kafka and the plant simulator: a forged command, the
kill switch, the two-person rule through the operator CLI, and an executor SIGKILLed and
restarted that never applies a command twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.simulator import PlantSimulator
from schemas.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from schemas.control import AuditRecord, ControlRecord
from schemas.events import CommandResult, now_ms
from schemas.topics import Topics
from tests.integration.test_executor import (
    CNC,
    CNC_SP,
    PRESS,
    PRESS_SP,
    ExecutorThread,
    SimulatorThread,
    command,
    consume,
    keys_dir,
    produce,
    signer,
    simulator,
)
from tests.support import kafka

pytestmark = pytest.mark.integration
__all__ = ["keys_dir", "simulator"]  # the fixtures, imported for these tests


def drain(bootstrap: str, topic: str, timeout_s: float = 3) -> list[bytes]:
    """Every message on ``topic`` that arrives within ``timeout_s``."""
    return kafka.consume(bootstrap, topic, timeout=timeout_s)


def audits(bootstrap: str, topics: Topics, count: int, timeout_s: float = 60) -> list[AuditRecord]:
    return [AuditRecord.decode(v) for v in consume(bootstrap, topics.command_audit, count,
                                                    timeout_s)]


def executor(catalog: Catalog, bootstrap: str, topics: Topics, sim: PlantSimulator,
             keys: Path, **kw: Any) -> ExecutorThread:
    return ExecutorThread(catalog=catalog, bootstrap=bootstrap, topics=topics,
                          endpoints={"opcua-sim": sim.opcua_endpoint,
                                     "modbus-sim": sim.modbus_endpoint},
                          group_id=f"executor-{uuid.uuid4().hex[:6]}",
                          trusted_keys_dir=keys / "trusted", **kw)


def test_a_forged_command_written_straight_to_the_topic_is_refused_and_audited(
        catalog: Catalog, kafka_bootstrap: str, topics: Topics, simulator: PlantSimulator,
        keys_dir: Path) -> None:
    genuine = json.loads(command(CNC_SP, 5000.0, CNC, keys=keys_dir).encode())
    forged = {**genuine, "value": 11000.0, "command_id": "forged-1"}  # signature kept
    before = simulator.value(CNC_SP)
    p = Producer({"bootstrap.servers": kafka_bootstrap})  # a plain client, no millstream
    p.produce(topics.commands, key=CNC.encode(), value=json.dumps(forged).encode())
    assert p.flush(10) == 0
    ex = executor(catalog, kafka_bootstrap, topics, simulator, keys_dir)
    try:
        [audit] = audits(kafka_bootstrap, topics, 1)
    finally:
        counters = ex.stop()
    assert audit.command_id == "forged-1" and audit.verdict == "rejected"
    assert audit.detail.startswith("bad signature") and audit.checks["signature"] == "refused"
    assert simulator.value(CNC_SP) == before and counters["applied"] == 0


def test_the_kill_switch_is_read_on_start_and_takes_effect_within_a_second(
        catalog: Catalog, kafka_bootstrap: str, topics: Topics, simulator: PlantSimulator,
        keys_dir: Path) -> None:
    alice = signer(keys_dir, "alice")

    def switch(target: str, on: bool) -> None:
        rec = ControlRecord("kill-switch", target, on, "test", now_ms()).signed_by(alice)
        produce(kafka_bootstrap, topics.control, [(rec.key(), rec.encode())])

    def send(sp: str, value: float, machine: str) -> None:
        c = command(sp, value, machine, keys=keys_dir)
        produce(kafka_bootstrap, topics.commands, [(c.key(), c.encode())])

    switch(CNC, True)  # on before the executor starts
    ex = executor(catalog, kafka_bootstrap, topics, simulator, keys_dir,
                  max_rate_per_setpoint=100, max_rate_per_machine=100)
    try:
        send(CNC_SP, 5000.0, CNC)
        send(PRESS_SP, 170.0, PRESS)  # another machine: not stopped
        first = {r.setpoint: r for r in (CommandResult.decode(v) for v in consume(
            kafka_bootstrap, topics.command_results, 2))}
        assert first[CNC_SP].status == "rejected" and "kill switch" in first[CNC_SP].detail
        assert first[PRESS_SP].status == "applied"
        switch("global", True)
        time.sleep(1.0)  # the switch must be in force one second after it is published
        send(PRESS_SP, 175.0, PRESS)
        switch(CNC, False)
        switch("global", False)
        time.sleep(1.0)
        send(CNC_SP, 6000.0, CNC)
        later = [CommandResult.decode(v) for v in consume(
            kafka_bootstrap, topics.command_results, 4)][2:]
    finally:
        ex.stop()
    assert later[0].status == "rejected" and "global kill switch" in later[0].detail
    assert later[1].status == "applied" and simulator.value(CNC_SP) == 6000.0
    assert simulator.value(PRESS_SP) == 170.0


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "millstream.cli", *args], env=env,
                          capture_output=True, text=True, timeout=90)


def test_two_person_rule_through_the_operator_cli(
        kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    text = DEFAULT_CATALOG.read_text().replace("max_step: 2,", "max_step: 2, two_person: true,")
    (tmp_path / "plant.yaml").write_text(text)
    catalog = load_catalog(tmp_path / "plant.yaml")
    env = {**os.environ, "MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "MILLSTREAM_TOPIC_PREFIX": topics.prefix, "MILLSTREAM_DATA_DIR": str(tmp_path),
           "MILLSTREAM_CATALOG": str(tmp_path / "plant.yaml")}
    alice, bob = {**env, "MILLSTREAM_COMMAND_SIGNER": "alice"}, {
        **env, "MILLSTREAM_COMMAND_SIGNER": "bob"}
    for who in ("alice", "bob"):
        assert _cli(env, "command", "keygen", who).returncode == 0
    sp = "compressor-01/pressure_sp"
    with SimulatorThread(catalog) as sim:
        ex = executor(catalog, kafka_bootstrap, topics, sim, tmp_path / "keys")
        try:
            sent = _cli(alice, "command", "send", sp, "7", "--reason", "test two-person")
            assert sent.returncode == 0, sent.stderr
            pending = json.loads(sent.stdout.strip().splitlines()[-1])
            assert pending["verdict"] == "pending" and pending["issuer"] == "alice"
            cid = pending["command_id"]
            own = _cli(alice, "command", "approve", cid, "--wait", "3")
            assert own.returncode == 3  # her own approval does not count: still waiting
            approved = _cli(bob, "command", "approve", cid)
            assert approved.returncode == 0, approved.stderr
            verdict = json.loads(approved.stdout.strip().splitlines()[-1])
            assert verdict["verdict"] == "applied"
            assert verdict["checks"]["two_person"] == "ok: approved by bob"
            path = catalog.resolve(sp)
            deadline = time.monotonic() + 2.0  # the physics takes the setpoint on its tick
            while sim.value(path) != 7.0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sim.value(path) == 7.0
            lapsed = _cli(alice, "command", "send", sp, "6", "--reason", "nobody approves",
                          "--ttl", "2")
            lapsed_id = json.loads(lapsed.stdout.strip().splitlines()[-1])["command_id"]
            time.sleep(3)
            log = _cli(env, "command", "audit", "--since", "1h")
        finally:
            ex.stop()
        assert sim.value(path) == 7.0
    records = [json.loads(line) for line in log.stdout.splitlines()]
    mine = [r for r in records if r["command_id"] == lapsed_id]
    assert [r["verdict"] for r in mine] == ["pending", "rejected"]
    assert mine[-1]["detail"].startswith("not approved")


def test_a_killed_executor_never_applies_a_command_twice(
        catalog: Catalog, kafka_bootstrap: str, topics: Topics, keys_dir: Path,
        tmp_path: Path) -> None:
    with SimulatorThread(catalog) as sim:
        env = {**os.environ, "MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
               "MILLSTREAM_TOPIC_PREFIX": topics.prefix, "MILLSTREAM_DATA_DIR": str(tmp_path),
               "MILLSTREAM_COMMAND_TRUSTED_KEYS_DIR": str(keys_dir / "trusted"),
               "MILLSTREAM_EXECUTOR_MAX_RATE_PER_SETPOINT": "1000",
               "MILLSTREAM_EXECUTOR_MAX_RATE_PER_MACHINE": "1000"}
        args = [sys.executable, "-m", "millstream.cli", "executor",
                f"--endpoint=opcua-sim={sim.opcua_endpoint}",
                f"--endpoint=modbus-sim={sim.modbus_endpoint}"]
        n = 30
        # a long TTL: on a loaded machine two executor start-ups can outlast a minute, and
        # an expired command is refused, which is not what this test is about
        cmds = [command(PRESS_SP, 150.0 + i, PRESS, keys=keys_dir, expires_in_ms=600_000)
                for i in range(n)]
        produce(kafka_bootstrap, topics.commands, [(c.key(), c.encode()) for c in cmds])
        log = (tmp_path / "executor.log").open("w")
        first = subprocess.Popen([*args, "--group-id", "g1"], env=env, stdout=log, stderr=log)
        try:
            consume(kafka_bootstrap, topics.command_audit, 5, timeout_s=90)
            first.send_signal(signal.SIGKILL)  # no clean shutdown, no last commit
            first.wait(10)
            # a new consumer group starts from the beginning: every command is redelivered
            second = subprocess.Popen([*args, "--group-id", "g2"], env=env, stdout=log,
                                      stderr=log)
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    status = [CommandResult.decode(v) for v in drain(
                        kafka_bootstrap, topics.command_results, 2)]
                    if len({r.command_id for r in status}) >= n:
                        break
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
            log.close()
        records = [AuditRecord.decode(v) for v in drain(kafka_bootstrap, topics.command_audit)]
        applied = Counter(r.command_id for r in records if r.verdict == "applied")
        assert applied and max(applied.values()) == 1, applied
        decided = {r.command_id for r in records if r.verdict in ("applied", "failed")}
        assert decided == {c.command_id for c in cmds}
        # the last command was applied exactly once, and the device holds its value
        assert sim.value(PRESS_SP) == 150.0 + n - 1
