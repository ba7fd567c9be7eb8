"""The command path end to end: Kafka commands -> executor -> the plant simulator -> results.

The simulator runs in-process on free ports, in its own thread and event loop; the
executor runs in another thread against the session's real Kafka.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.simulator import FaultPlan, PlantSimulator
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.events import Command, CommandResult, DeadLetter, now_ms
from schemas.signing import Signer, generate_key
from schemas.status import read_status
from schemas.topics import Topics
from sinks.executor import run_executor
from tests.support import kafka

pytestmark = pytest.mark.integration

CNC = "acme/plant1/machining/line1/cnc-01"
CNC_SP = f"{CNC}/spindle_speed_sp"  # OPC-UA, [1000, 12000] rpm
PRESS = "acme/plant1/forming/line2/press-01"
PRESS_SP = f"{PRESS}/pressure_sp"  # Modbus holding 0, float32, [100, 250] bar


class SimulatorThread:
    """The plant simulator on its own event loop in a daemon thread."""

    def __init__(self, catalog: Catalog) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim = PlantSimulator(catalog, opcua_port=free_port(), modbus_port=free_port(),
                                  seed=7, faults=FaultPlan([]))

    def __enter__(self) -> PlantSimulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(timeout=30)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class ExecutorThread:
    """run_executor in a thread; ``stop()`` returns its final counters."""

    def __init__(self, **kwargs: Any) -> None:
        self.stop_event = threading.Event()
        self.result: Future[dict[str, Any]] = Future()
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self.result.set_result(run_executor(stop=self.stop_event, **kwargs))
        except BaseException as exc:
            self.result.set_exception(exc)

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        return self.result.result(timeout=30)


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signing keys of the stage "streams" and the operators "alice" and "bob"; the
    executor trusts ``<keys_dir>/trusted``."""
    d = tmp_path_factory.mktemp("keys")
    for who in ("streams", "alice", "bob"):
        generate_key(who, d, d / "trusted")
    return d


def signer(keys_dir: Path, who: str = "streams") -> Signer:
    return Signer.from_file(who, keys_dir / f"{who}.key")


@pytest.fixture
def simulator(catalog: Catalog) -> Iterator[PlantSimulator]:
    with SimulatorThread(catalog) as sim:
        yield sim


def command(setpoint: str, value: float, machine: str, *, command_id: str | None = None,
            expires_in_ms: int = 60_000, keys: Path | None = None) -> Command:
    """A command signed by the stage "streams" with the keys in ``keys``."""
    now = now_ms()
    cmd = Command(command_id=command_id or uuid.uuid4().hex, rule="test", machine=machine,
                  setpoint=setpoint, value=value, reason="integration test",
                  issued_at=now, expires_at=now + expires_in_ms)
    return cmd.signed_by(signer(keys)) if keys is not None else cmd


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 60) -> list[bytes]:
    """Exactly ``count`` messages of ``topic`` (fails naming what did arrive)."""
    values = kafka.consume(bootstrap, topic, until=lambda v: len(v) >= count,
                           timeout=timeout_s)
    assert len(values) == count, f"{len(values)} of {count} messages on {topic}: {values}"
    return values


def wait_for(predicate: Any, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_commands_are_checked_written_and_read_back(
    catalog: Catalog, kafka_bootstrap: str, topics: Topics, simulator: PlantSimulator,
    tmp_path: Path, keys_dir: Path,
) -> None:
    status_file = tmp_path / "executor.json"
    opcua = command(CNC_SP, 5000.0, CNC, command_id="cnc-slow-down", keys=keys_dir)
    modbus = command(PRESS_SP, 160.5, PRESS, command_id="press-ease-off", keys=keys_dir)
    too_fast = command(CNC_SP, 20000.0, CNC, command_id="too-fast", keys=keys_dir)
    expired = command(PRESS_SP, 150.0, PRESS, command_id="stale", expires_in_ms=-1000,
                      keys=keys_dir)
    produce(kafka_bootstrap, topics.commands, [
        (opcua.key(), opcua.encode()),
        (modbus.key(), modbus.encode()),
        (too_fast.key(), too_fast.encode()),
        (expired.key(), expired.encode()),
        (opcua.key(), opcua.encode()),  # redelivered: must not be written twice
        (b"cnc-01", b'{"schema": "millstream.commands.v1", "value": '),  # malformed
    ])
    executor = ExecutorThread(
        catalog=catalog, bootstrap=kafka_bootstrap, topics=topics,
        endpoints={"opcua-sim": simulator.opcua_endpoint,
                   "modbus-sim": simulator.modbus_endpoint},
        group_id=f"executor-{topics.prefix}", status_file=status_file,
        trusted_keys_dir=keys_dir / "trusted",
    )
    try:
        results = [CommandResult.decode(v)
                   for v in consume(kafka_bootstrap, topics.command_results, 5)]
        dead = [DeadLetter.decode(v) for v in consume(kafka_bootstrap, topics.deadletter, 1)]
    finally:
        counters = executor.stop()

    by_id = {r.command_id: r for r in results[:4]}
    assert [r.command_id for r in results] == [
        "cnc-slow-down", "press-ease-off", "too-fast", "stale", "cnc-slow-down"]

    applied_cnc, applied_press = by_id["cnc-slow-down"], by_id["press-ease-off"]
    assert (applied_cnc.status, applied_cnc.readback) == ("applied", 5000.0)
    assert (applied_press.status, applied_press.readback) == ("applied", 160.5)
    assert applied_cnc.setpoint == CNC_SP and applied_press.setpoint == PRESS_SP
    assert wait_for(lambda: simulator.value(CNC_SP) == 5000.0), simulator.value(CNC_SP)
    assert wait_for(lambda: simulator.value(PRESS_SP) == 160.5), simulator.value(PRESS_SP)

    refused = by_id["too-fast"]
    assert refused.status == "rejected" and refused.readback is None
    assert "20000" in refused.detail and "[1000, 12000]" in refused.detail
    assert by_id["stale"].status == "rejected" and "expired" in by_id["stale"].detail
    # the redelivery is not written again; it gets the first result again, identical, so
    # that the command_results row (keyed by command_id) still says "applied"
    assert results[4] == applied_cnc
    assert simulator.value(PRESS_SP) == 160.5  # the expired command wrote nothing

    assert dead[0].stage == "executor" and dead[0].reason == "not-json"
    assert dead[0].topic == topics.commands and dead[0].offset == 5
    assert dead[0].payload.startswith('{"schema"')

    expected = {"received": 6, "applied": 2, "rejected": 2, "failed": 0, "deadlettered": 1}
    assert {k: counters[k] for k in expected} == expected
    on_disk = read_status(status_file)
    assert on_disk is not None and {k: on_disk[k] for k in expected} == expected


def test_an_unreachable_device_fails_the_command_after_bounded_retries(
    catalog: Catalog, kafka_bootstrap: str, topics: Topics, keys_dir: Path,
) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens here
    cmd = command(PRESS_SP, 170.0, PRESS, keys=keys_dir)
    produce(kafka_bootstrap, topics.commands, [(cmd.key(), cmd.encode())])
    executor = ExecutorThread(
        catalog=catalog, bootstrap=kafka_bootstrap, topics=topics,
        endpoints={"modbus-sim": down}, group_id=f"executor-{topics.prefix}", attempts=2,
        trusted_keys_dir=keys_dir / "trusted",
    )
    try:
        [value] = consume(kafka_bootstrap, topics.command_results, 1)
    finally:
        counters = executor.stop()
    result = CommandResult.decode(value)
    assert result.status == "failed" and result.readback is None
    assert down in result.detail
    assert counters["failed"] == 1 and counters["received"] == 1
