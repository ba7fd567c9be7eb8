"""The executor's decisions on one message, without Kafka or devices (fakes stand in).

Every refusal is audited with its reason and never reaches a device; a write that does
not read back, or that the PLC does not acknowledge, is failed, never applied.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from schemas.catalog import Catalog, load_catalog
from schemas.control import AuditRecord, ControlRecord
from schemas.events import Command, CommandResult, DeadLetter, now_ms
from schemas.signing import Signer, generate_key
from schemas.topics import Topics
from sinks.executor import _Executor

CNC = "acme/plant1/machining/line1/cnc-01"
CNC_SP = f"{CNC}/spindle_speed_sp"
PRESS = "acme/plant1/forming/line2/press-01"


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[int] = []

    def commit(self, *, message: Message, asynchronous: bool) -> None:
        self.committed.append(message.offset() or 0)


class FakeDevices:
    """Holds values per tag; ``readback_offset`` makes the device hold something else."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {CNC_SP: 8000.0}
        self.writes: list[tuple[str, float]] = []
        self.readback_offset = 0.0
        self.acks = False  # the PLC mirrors a strobe onto its ack

    async def write_and_read_back(self, path: str, value: float) -> float:
        self.writes.append((path, value))
        self.values[path] = value + (self.readback_offset if path == CNC_SP else 0.0)
        if self.acks and path.endswith("/strobe"):
            self.values[path.replace("/strobe", "/ack")] = value
        return self.values[path]

    async def read_value(self, path: str) -> float:
        return self.values.get(path, 0.0)

    async def close(self) -> None:
        pass


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def publish(self, topic: str, key: bytes, value: bytes | None) -> bool:
        self.sent.append((topic, key, value))
        return True

    def on(self, suffix: str) -> list[bytes]:
        return [v for t, _, v in self.sent if t.endswith(suffix) and v is not None]

    def results(self) -> list[CommandResult]:
        return [CommandResult.decode(v) for v in self.on(".command-results")]

    def audits(self) -> list[AuditRecord]:
        return [AuditRecord.decode(v) for v in self.on(".command-audit")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for who in ("streams", "alice", "bob", "mallory"):
        generate_key(who, d / "private", d / "trusted")
    (d / "trusted" / "mallory.pub").unlink()  # mallory has a key, but nobody trusts it
    return d


def signer(keys: Path, who: str = "streams") -> Signer:
    return Signer.from_file(who, keys / "private" / f"{who}.key")


def make_executor(catalog: Catalog, keys: Path, **kw: Any) -> Any:
    ex: Any = _Executor(catalog, bootstrap="127.0.0.1:9", topics=Topics("unit"),
                        group_id="unit", kafka_config={"log_level": "0"},
                        stop=threading.Event(), attempts=1,
                        trusted_keys_dir=keys / "trusted", **kw)
    ex.consumer, ex.devices, ex.out = FakeConsumer(), FakeDevices(), FakePublisher()
    return ex


@pytest.fixture
def executor(keys: Path) -> Any:
    return make_executor(load_catalog(), keys)


def cmd(keys: Path | None, value: float = 5000.0, *, cid: str = "c-1", who: str = "streams",
        setpoint: str = CNC_SP, machine: str = CNC, **kw: Any) -> Command:
    now = now_ms()
    c = Command(cid, "r", machine, setpoint, value, "test", now, now + 60_000, **kw)
    return c.signed_by(signer(keys, who)) if keys is not None else c


def deliver(ex: Any, payload: bytes, offset: int = 0) -> None:
    asyncio.run(ex._on_message(Message(topic="unit.commands", partition=0, offset=offset,
                                       value=payload)))


def test_a_signed_command_is_written_read_back_and_audited(executor: Any, keys: Path) -> None:
    deliver(executor, cmd(keys).encode())
    assert executor.devices.writes == [(CNC_SP, 5000.0)]
    [result] = executor.out.results()
    assert result.status == "applied" and result.readback == 5000.0
    [audit] = executor.out.audits()
    assert (audit.verdict, audit.issuer, audit.value_before, audit.value_after) == (
        "applied", "streams", 8000.0, 5000.0)
    assert {k: audit.checks[k] for k in ("signature", "allow_list", "range", "step", "rate",
                                         "kill_switch", "readback")} == dict.fromkeys(
        ("signature", "allow_list", "range", "step", "rate", "kill_switch", "readback"), "ok")
    # the write was marked in flight on the control topic first, and cleared after
    inflight = [(k, v) for t, k, v in executor.out.sent if t == "unit.control"]
    assert [k for k, _ in inflight] == [b"inflight/c-1", b"inflight/c-1"]
    assert inflight[0][1] is not None and inflight[1][1] is None


def test_a_redelivered_command_republishes_its_first_result(executor: Any, keys: Path) -> None:
    payload = cmd(keys).encode()
    deliver(executor, payload)
    deliver(executor, payload)  # redelivered after a rebalance
    assert executor.devices.writes == [(CNC_SP, 5000.0)]  # written once
    first, second = executor.out.results()
    assert first.status == "applied" and second == first
    assert executor.consumer.committed == [0, 0]


@pytest.mark.parametrize(("make", "why"), [
    (lambda k: cmd(None).encode(), "unsigned"),
    (lambda k: cmd(k, who="mallory").encode(), "unknown signer"),
    (lambda k: json.dumps({**json.loads(cmd(k, 5000.0).encode()), "value": 11000.0}).encode(),
     "bad signature"),
])
def test_unsigned_and_forged_commands_are_refused_audited_and_not_written(
        executor: Any, keys: Path, make: Any, why: str) -> None:
    deliver(executor, make(keys))
    assert executor.devices.writes == []
    assert executor.out.results() == []  # the id's result slot stays free
    [audit] = executor.out.audits()
    assert audit.verdict == "rejected" and audit.detail.startswith(why)
    assert audit.checks["signature"] == "refused"
    assert executor.consumer.committed == [0]


def test_a_replayed_id_with_another_value_is_refused(executor: Any, keys: Path) -> None:
    deliver(executor, cmd(keys, 5000.0).encode())
    deliver(executor, cmd(keys, 6000.0).encode(), offset=1)  # same id, properly signed
    assert executor.devices.writes == [(CNC_SP, 5000.0)]
    assert len(executor.out.results()) == 1
    audit = executor.out.audits()[-1]
    assert audit.verdict == "rejected" and audit.detail.startswith("replay")
    assert "6000" in audit.detail and audit.checks["replay"] == "refused"


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"schema": "millstream.commands.v1", "command_id": "x"}', "bad-field"),
    (b'{"schema": "millstream.commands.v1", "command_id": "n", "rule": "r", "machine": "m",'
     b' "setpoint": "s", "value": NaN, "reason": "", "issued_at": 1, "expires_at": 2}',
     "bad-field"),
    (b"{this is not json", "not-json"),
    (b"[" * 100_000, "decode-error"),
])
def test_malformed_commands_are_dead_lettered_and_audited(executor: Any, payload: bytes,
                                                          reason: str) -> None:
    deliver(executor, payload)
    [dl] = [DeadLetter.decode(v) for v in executor.out.on(".deadletter")]
    assert dl.reason == reason
    [audit] = executor.out.audits()
    assert audit.verdict == "rejected" and audit.checks == {"schema": "refused"}
    assert reason in audit.detail
    assert executor.devices.writes == [] and executor.consumer.committed == [0]


@pytest.mark.parametrize(("kw", "check", "words"), [
    ({"value": 10**400}, "range", "out of limits"),
    ({"machine": PRESS}, "allow_list", "machine mismatch"),
    ({"machine": "acme/plant1/nowhere/line9/ghost-01",
      "setpoint": "acme/plant1/nowhere/line9/ghost-01/sp"}, "allow_list", "unknown setpoint"),
    ({"setpoint": f"{CNC}/spindle_temp"}, "allow_list", "not a setpoint"),
    ({"value": 2000.0}, "step", "step too large"),
])
def test_unsafe_commands_are_rejected_with_the_check_that_refused(
        executor: Any, keys: Path, kw: dict[str, Any], check: str, words: str) -> None:
    value = kw.pop("value", 5000.0)
    deliver(executor, cmd(keys, value, **kw).encode())
    assert executor.devices.writes == []
    [result] = executor.out.results()
    assert result.status == "rejected" and words in result.detail
    [audit] = executor.out.audits()
    assert audit.checks[check] == "refused" and audit.verdict == "rejected"


def test_a_readback_outside_the_tolerance_fails(executor: Any, keys: Path) -> None:
    executor.devices.readback_offset = 50.0  # the PLC clamps the value
    deliver(executor, cmd(keys).encode())
    [result] = executor.out.results()
    assert result.status == "failed" and "reads back 5050" in result.detail
    assert executor.out.audits()[0].checks["readback"].startswith("refused")


def test_dry_run_checks_everything_but_writes_nothing(executor: Any, keys: Path) -> None:
    deliver(executor, cmd(keys, dry_run=True).encode())
    deliver(executor, cmd(keys, 2000.0, cid="c-2", dry_run=True).encode(), offset=1)
    assert executor.devices.writes == []
    ok, too_big = executor.out.results()
    assert ok.status == "dry-run" and "would write 5000" in ok.detail
    assert too_big.status == "rejected"  # a dry run still runs every check
    assert executor.out.audits()[0].dry_run is True


def test_the_kill_switch_refuses_every_command(executor: Any, keys: Path) -> None:
    executor.switches.apply(ControlRecord("kill-switch", CNC, True, "maintenance", 1), False)
    deliver(executor, cmd(keys).encode())
    assert executor.devices.writes == []
    [result] = executor.out.results()
    assert result.status == "rejected" and "kill switch" in result.detail
    assert "maintenance" in result.detail


def test_a_write_interrupted_by_a_crash_is_not_written_again(executor: Any,
                                                            keys: Path) -> None:
    executor.control.inflight.add("c-1")  # the previous executor died mid-write
    deliver(executor, cmd(keys).encode())
    assert executor.devices.writes == []
    [result] = executor.out.results()
    assert result.status == "failed" and result.detail.startswith("interrupted")
