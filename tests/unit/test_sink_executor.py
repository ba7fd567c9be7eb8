"""The executor's handling of one message, without Kafka or devices (fakes stand in)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from confluent_kafka import Message

from schemas.catalog import Catalog, load_catalog
from schemas.events import Command, CommandResult, now_ms
from schemas.topics import Topics
from sinks.executor import _Executor

CNC = "acme/plant1/machining/line1/cnc-01"
CNC_SP = f"{CNC}/spindle_speed_sp"


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[int] = []

    def commit(self, *, message: Message, asynchronous: bool) -> None:
        self.committed.append(message.offset() or 0)


class FakeDevices:
    def __init__(self) -> None:
        self.writes: list[tuple[str, float]] = []

    async def write_and_read_back(self, path: str, value: float) -> float:
        self.writes.append((path, value))
        return value


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def executor(catalog: Catalog) -> Any:
    ex: Any = _Executor(catalog, bootstrap="127.0.0.1:9", topics=Topics("unit"), endpoints=None,
                   group_id="unit", kafka_config={"log_level": "0"}, status_file=None,
                   stop=threading.Event(), max_rate_per_setpoint=6, attempts=1)
    ex.consumer = FakeConsumer()
    ex.devices = FakeDevices()
    ex.published = []

    def publish(topic: str, key: bytes, value: bytes) -> bool:
        ex.published.append((topic, value))
        return True

    ex._publish = publish
    return ex


def msg(offset: int, value: bytes) -> Message:
    return Message(topic="unit.commands", partition=0, offset=offset, value=value)


def test_deeply_nested_json_is_dead_lettered_not_a_crash(executor: Any) -> None:
    asyncio.run(executor._on_message(msg(0, b"[" * 100_000)))
    assert [t for t, _ in executor.published] == ["unit.deadletter"]
    assert executor.consumer.committed == [0]


def test_a_redelivered_command_republishes_its_first_result(executor: Any) -> None:
    """command_results is a ReplacingMergeTree keyed by command_id: a second, different
    result for a redelivered command ("duplicate") would replace "applied" in the audit."""
    now = now_ms()
    cmd = Command("c-1", "r", CNC, CNC_SP, 5000.0, "test", now, now + 60_000).encode()
    asyncio.run(executor._on_message(msg(0, cmd)))
    asyncio.run(executor._on_message(msg(0, cmd)))  # redelivered after a rebalance
    assert executor.devices.writes == [(CNC_SP, 5000.0)]  # written once
    first, second = (CommandResult.decode(v) for _, v in executor.published)
    assert first.status == "applied"
    assert second == first
    assert executor.consumer.committed == [0, 0]


def test_a_refused_command_redelivered_is_refused_again_and_never_written(
        executor: Any) -> None:
    now = now_ms()
    cmd = Command("c-2", "r", CNC, CNC_SP, 1e9, "test", now, now + 60_000).encode()
    asyncio.run(executor._on_message(msg(0, cmd)))
    asyncio.run(executor._on_message(msg(0, cmd)))
    first, second = (CommandResult.decode(v) for _, v in executor.published)
    assert first.status == "rejected" and "out of limits" in first.detail
    assert second == first
    assert executor.devices.writes == []


def test_the_memory_of_commands_is_bounded_oldest_first(executor: Any) -> None:
    executor.remembered_results = 2
    now = now_ms()
    for i, cid in enumerate(("a", "b", "c")):
        value = 5000.0 + i
        cmd = Command(cid, "r", CNC, CNC_SP, value, "test", now, now + 60_000)
        asyncio.run(executor._on_message(msg(i, cmd.encode())))
    assert list(executor._results) == ["b", "c"]  # "a" forgotten first
