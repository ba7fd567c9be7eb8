"""The Faust edge of the digital twin: two relay agents and the merge agent.

Which worker owns a machine's twin: each reading worker sends its machines' parts to
``<prefix>.twin-inputs`` keyed by machine path; ``relay_alarms`` and ``relay_results`` (the
alarms and command-results topics have one partition, so one worker runs each) send every
alarm and command result there keyed the same way (:class:`streams.twin_inputs.Relay`).
``merge`` reads twin-inputs: Kafka gives each of its partitions to one worker of the
group, so exactly one worker merges and publishes each machine's record to the compacted
``<prefix>.twin`` (:class:`streams.twin_merge.TwinMerger`). On every assignment the merger
is seeded from the twin topic (:func:`streams.twin_seed.read_twins`). Each twin record
carries the header ``millstream-worker`` (host:pid of the worker that merged it). The
readings side's KPI state moves with its readings partitions through the keeper
(:class:`streams.keeper.StateKeeper`), like the windows.

Inputs that break their contract go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Collection, Mapping
from typing import Any

import faust

from schemas.catalog import Catalog
from schemas.events import DeadLetter, now_ms
from schemas.exceptions import ContractError
from schemas.topics import Topics
from streams.twin_inputs import Relay, TwinInput
from streams.twin_merge import TwinMerger
from streams.twin_seed import read_twins

__all__ = ["add_twin_agents"]

logger = logging.getLogger(__name__)

STAGE = "streams"


def add_twin_agents(app: faust.App, catalog: Catalog, topics: Topics, *, bootstrap: str,
                    kafka_config: Mapping[str, Any] | None = None) -> TwinMerger:
    """Register the relay and merge agents and the seeding on ``app``; the merger."""
    merger, relay = TwinMerger(catalog), Relay(catalog)
    dropped = {"tombstones": 0, "deadletters": 0}
    worker = f"{socket.gethostname()}:{os.getpid()}"  # header of every twin record sent
    owned: set[int] = set()  # the twin-inputs partitions this worker merges

    def topic(name: str) -> faust.TopicT:
        # internal: Faust creates the topic (with millstream's partitions and settings)
        # before it subscribes, if ensure_topics has not; e.g. alarms before that stage runs
        return app.topic(name, partitions=topics.partitions(name), internal=True,
                         config=topics.config(name) or None, key_type=bytes, value_type=bytes)

    inputs, twin, dead = topic(topics.twin_inputs), topic(topics.twin), topic(topics.deadletter)

    async def dead_letter(msg: Any, exc: ContractError) -> None:
        dropped["deadletters"] += 1
        logger.warning("dead letter %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        letter = DeadLetter.of(stage=STAGE, reason=exc.reason, detail=exc.detail,
                               topic=msg.topic, partition=msg.partition, offset=msg.offset,
                               key=msg.key, value=msg.value)
        await dead.send(key=letter.key_bytes(), value=letter.encode())

    async def relay_from(stream: faust.StreamT,
                         decode: Callable[[bytes | None], TwinInput]) -> None:
        async for event in stream.events():
            msg = event.message
            if msg.value is None:  # a compaction tombstone carries nothing to relay
                dropped["tombstones"] += 1
                continue
            try:
                inp = decode(msg.value)
            except ContractError as exc:
                await dead_letter(msg, exc)
                continue
            await inputs.send(key=inp.key(), value=inp.encode())

    @app.agent(topic(topics.alarms))
    async def relay_alarms(stream: faust.StreamT) -> None:
        await relay_from(stream, relay.alarm)

    @app.agent(topic(topics.command_results))
    async def relay_results(stream: faust.StreamT) -> None:
        await relay_from(stream, relay.command_result)

    @app.agent(inputs)
    async def merge(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                rec = merger.apply(TwinInput.decode(msg.value), now_ms())
            except ContractError as exc:
                await dead_letter(msg, exc)
                continue
            if rec is not None:
                await twin.send(key=rec.key(), value=rec.encode(),
                                headers={"millstream-worker": worker.encode()})

    async def seed(sender: Any, assigned: Collection[Any], **kwargs: Any) -> None:
        owned.clear()
        owned.update(tp.partition for tp in assigned if tp.topic == topics.twin_inputs)
        if not owned:
            return
        try:  # an exception here would crash the worker (Faust's rebalance handler)
            await app.producer.flush()  # our own last records first
            records = await asyncio.to_thread(read_twins, bootstrap, topics.twin,
                                              kafka_config)
        except Exception as exc:
            logger.error("twin: could not read %s to seed the merger (%s); the twins of "
                         "partitions %s start from their next inputs", topics.twin, exc,
                         sorted(owned))
            return
        logger.info("twin: seeded %d machines from %s", merger.seed(records), topics.twin)

    app.on_partitions_assigned.connect(seed)  # type: ignore[arg-type]
    app.twin_counters = lambda: {  # type: ignore[attr-defined]
        **merger.count, **dropped, "worker": worker, "partitions": sorted(owned)}
    del relay_alarms, relay_results, merge
    return merger
