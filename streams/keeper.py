"""The worker's state across crashes and rebalances: checkpoints per input partition.

:class:`StateKeeper` sits between the consumer (the Faust edge) and the
:class:`FrameProcessor`. Per assigned input partition it knows the next offset to process.
Every ``interval_s`` (and when the partition is revoked or the worker stops) it writes a
checkpoint: that partition's state and that offset, after every result sent so far is
acknowledged (at-least-once) or in one transaction with them (exactly-once). The input
offset is committed only then, so the committed offset never runs ahead of saved state.
When a partition is assigned it restores the newest checkpoint and seeks there; the frames
after it are processed again, and their windows come out again with the same values.

Without a state topic (``interval_s == 0``, memory only) it only commits offsets after the
results are acknowledged; state is lost on a crash, as before checkpoints existed.

Operators' alarm actions and false-positive feedback (:meth:`StateKeeper.operator`) come
from topics partitioned as the readings: their effect is part of the state of the partition
holding the alarm's machine, and their next offsets (``inputs``) are saved, committed and
restored with the readings partition of the same number, so a restart neither loses nor
repeats one.

Lifecycle: ``StateKeeper(...)``; ``await assigned(ps)``/``await revoked(ps)`` from the
rebalance callbacks; ``await process(...)`` per message; ``await tick()`` on a timer;
``await stop(flush)`` at shutdown. One lock serialises them, so a checkpoint never sees a
message half processed.

A message can arrive before its partition's assignment is handled (Faust may resume
fetching before the signal's receivers ran) or between a revocation and the next
assignment. It is held, in order, and processed once the partition is assigned here (or
let go if it went to another worker, which reads it from the committed offset): skipping
it would lose it, since nothing seeks back to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.events import now_ms
from streams.checkpoints import StateTopic
from streams.exceptions import StateError, StateVersionError
from streams.outputs import Outputs
from streams.processor import FrameProcessor, Output
from streams.state import Checkpoint, checkpoint_records, decode_state, encode_state

__all__ = ["ConsumerControl", "StateKeeper"]

logger = logging.getLogger(__name__)

HOLD_LIMIT = 100_000  # messages held per partition until its assignment is handled

class ConsumerControl(Protocol):
    """The input consumer's offsets, by partition of the input topic."""

    async def committed(self, partitions: Collection[int]) -> dict[int, int | None]: ...

    async def commit(self, offsets: dict[int, int]) -> None: ...

    async def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        """Seek the readings topic's ``partition`` (or that of ``topic``, co-partitioned)."""

    async def commit_inputs(self, offsets: dict[str, dict[int, int]]) -> None:
        """Commit offsets of the operator topics: topic -> partition -> offset."""

    def highwater(self, partition: int) -> int | None:
        """The offset after the partition's newest message, as last fetched (None:
        not known yet)."""


@dataclass
class _Part:
    next_offset: int | None  # of the next message to process; None: from the start
    saved_offset: int | None  # next_offset at the last checkpoint (or commit)
    seq: int = 0  # of the last checkpoint
    stale: list[bytes] = field(default_factory=list)  # chunk keys to tombstone next time
    owned: bool = True  # False between a revocation and the next assignment
    dirty: bool = False  # results sent or state changed since the last checkpoint
    inputs: dict[str, int] = field(default_factory=dict)  # operator topic -> next offset


class StateKeeper:
    """Checkpoints, restores and moves a FrameProcessor's state per input partition."""

    def __init__(self, proc: FrameProcessor, outputs: Outputs, consumer: ConsumerControl, *,
                 app_id: str, state: StateTopic | None, interval_s: float) -> None:
        if interval_s < 0 or (interval_s == 0) != (state is None):
            raise StateError(f"checkpoint interval {interval_s}s and state topic {state} do "
                             "not fit: a positive interval needs a state topic, 0 none")
        if outputs.transactional and state is None:
            raise StateError("exactly_once needs checkpoints: set a checkpoint interval > 0")
        self.proc = proc
        self.outputs = outputs
        self.consumer = consumer
        self.app_id = app_id
        self.state = state
        self.interval_s = interval_s
        self._parts: dict[int, _Part] = {}
        # per partition, in arrival order: (operator topic or None for readings, offset, step)
        self._held: dict[int, list[tuple[str | None, int, Callable[[], Awaitable[None]]]]] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._last_checkpoint = time.monotonic()
        self.stats: dict[str, Any] = {"checkpoints": 0, "checkpoint_bytes": 0,
                                      "checkpoint_ms": 0.0, "restored": 0, "replayed": 0,
                                      "held": 0, "skipped": 0}

    @property
    def partitions(self) -> list[int]:
        return sorted(p for p, part in self._parts.items() if part.owned)

    def offsets(self) -> dict[str, dict[str, int | None]]:
        """Per owned partition: the next offset to process and the one last saved (their
        difference is what a crash now would replay)."""
        return {str(p): {"next": part.next_offset, "saved": part.saved_offset}
                for p, part in sorted(self._parts.items()) if part.owned}

    async def _start(self) -> None:
        if not self._started:
            await self.outputs.start()
            if self.state is not None:
                await self.state.start()
            self._started = True

    # -- the message path ---------------------------------------------------------------
    async def process(self, key: bytes | None, value: bytes | None, topic: str,
                      partition: int, offset: int) -> None:
        async with self._lock:
            if not self._owns(partition):
                self._hold(partition, None, offset, lambda: self._process(
                    key, value, topic, partition, offset))
                return
            await self._process(key, value, topic, partition, offset)

    async def _process(self, key: bytes | None, value: bytes | None, topic: str,
                       partition: int, offset: int) -> None:
        part = self._parts[partition]
        if part.next_offset is not None and offset < part.next_offset:
            self.stats["replayed"] += 1  # already in the restored state
            return
        out = self.proc.process(key, value, topic, partition, offset, now_ms())
        part.next_offset = offset + 1
        part.dirty = True
        if out:
            await self.outputs.send(partition, out)

    def _owns(self, partition: int) -> bool:
        part = self._parts.get(partition)
        return part is not None and part.owned

    def _hold(self, partition: int, topic: str | None, offset: int,
              step: Callable[[], Awaitable[None]]) -> None:
        """Keep a message of a partition not (yet) assigned here until it is."""
        held = self._held.setdefault(partition, [])
        if len(held) >= HOLD_LIMIT:
            self.stats["skipped"] += 1
            logger.error("partition %d: message at offset %d arrived with %d others before the "
                         "partition's assignment was handled; it is not processed until the "
                         "worker restarts from its committed offset", partition, offset,
                         len(held))
            return
        held.append((topic, offset, step))
        self.stats["held"] += 1

    async def _release_held(self) -> None:
        """After an assignment: process what was held for the partitions owned now (the
        ones before the restored offset count as replayed); what was held for others is
        theirs (they read it from the committed offset)."""
        held, self._held = self._held, {}
        for p in sorted(held):
            if not self._owns(p):
                continue
            part, first = self._parts[p], dict[str | None, int]()
            for topic, offset, _step in held[p]:
                first.setdefault(topic, offset)
            # where the restore put each input: held messages beyond it with a gap between
            # come again in order after its seek, so they are let go
            starts = {t: part.next_offset if t is None else part.inputs.get(t) for t in first}
            gap = {t for t, o in first.items() if (at := starts[t]) is not None and o > at}
            for topic, _offset, step in held[p]:
                if topic not in gap:
                    await step()

    async def operator(self, kind: str, value: bytes | None, topic: str, partition: int,
                       offset: int) -> None:
        """An operator's alarm action (``kind`` "action") or false positive ("feedback")
        from ``topic``'s ``partition``; its records go out with the partition holding the
        alarm's machine, whose next checkpoint holds its effect."""
        async with self._lock:
            if not self._owns(partition):
                self._hold(partition, topic, offset, lambda: self._operator(
                    kind, value, topic, partition, offset))
                return
            await self._operator(kind, value, topic, partition, offset)

    async def _operator(self, kind: str, value: bytes | None, topic: str, partition: int,
                        offset: int) -> None:
        part = self._parts[partition]
        if offset < part.inputs.get(topic, -1):
            self.stats["replayed"] += 1  # already in the restored state
            return
        out, owner = self.proc.operator(kind, value, topic, partition, offset, now_ms())
        part.inputs[topic] = offset + 1
        part.dirty = True
        holder = self._parts.get(owner)
        if holder is None or not holder.owned:
            owner, holder = partition, part
        holder.dirty = True
        if out:
            await self.outputs.send(owner, out)

    def _caught_up(self, partition: int) -> bool:
        """Has every message of the partition fetched so far been processed? Only then is
        a source without frames silent, rather than waiting in the consumer."""
        hw, nxt = self.consumer.highwater(partition), self._parts[partition].next_offset
        return hw is not None and (nxt is None or nxt >= hw)

    async def tick(self) -> None:
        """Close idle windows (of caught-up partitions); checkpoint every partition when
        the interval is over."""
        async with self._lock:
            now = now_ms()
            for p in self.partitions:
                if not self._caught_up(p):
                    continue
                out = self.proc.tick(now, p)
                if out:
                    self._parts[p].dirty = True
                    await self.outputs.send(p, out)
            if self.interval_s and time.monotonic() - self._last_checkpoint < self.interval_s:
                return
            self._last_checkpoint = time.monotonic()
            for p in self.partitions:
                await self._save(p, strict=False)

    # -- checkpoints --------------------------------------------------------------------
    async def checkpoint(self) -> None:
        """Checkpoint (memory only: commit) every owned partition now, after every result
        sent so far is delivered (or, exactly-once, in its committed transaction); raises
        what fails. For the end of a measured run: ``bench streams`` stops its clock here."""
        async with self._lock:
            for p in self.partitions:
                await self._save(p, strict=True)

    async def _save(self, partition: int, *, strict: bool) -> None:
        """Checkpoint (or, memory only, commit) ``partition`` if anything changed. A
        failure under at-least-once is logged and retried next time unless ``strict``."""
        part = self._parts[partition]
        if (part.next_offset is None and not part.inputs) or not (
                part.dirty or part.saved_offset != part.next_offset):
            return  # (a partition with operator messages but no readings yet is saved)
        try:
            if self.state is None:
                await self.outputs.flush()
                if part.next_offset is not None:
                    await self.consumer.commit({partition: part.next_offset})
                await self._commit_inputs(partition, part)
            else:
                await self._checkpoint(partition, part)
        except Exception:
            if strict or self.outputs.transactional:
                raise
            logger.exception("checkpoint of partition %d failed; retrying in %.1fs",
                             partition, self.interval_s)
            return
        part.saved_offset, part.dirty = part.next_offset, False

    async def _checkpoint(self, partition: int, part: _Part) -> None:
        assert self.state is not None
        t0 = time.perf_counter()
        doc = self.proc.snapshot(partition, arrays=True)
        doc["inputs"] = dict(part.inputs)
        blob = encode_state(doc)
        # no reading processed yet, and none committed: the readings from the start
        offset = part.next_offset if part.next_offset is not None else 0
        ck = Checkpoint(self.app_id, partition, part.seq + 1, offset, blob, now_ms())
        records = checkpoint_records(ck, part.stale)
        await self.outputs.checkpoint(partition, records, self.state.state_partition(partition),
                                      ck.offset, inputs=part.inputs)
        if not self.outputs.transactional:
            await self.consumer.commit({partition: ck.offset})
            await self._commit_inputs(partition, part)
        part.seq = ck.seq
        part.stale = ck.chunk_keys()  # tombstoned by the next checkpoint
        self.stats["checkpoints"] += 1
        self.stats["checkpoint_bytes"] = len(blob)
        self.stats["checkpoint_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        logger.debug("checkpoint %d of partition %d at offset %d: %d bytes in %.1f ms", ck.seq,
                     partition, ck.offset, len(blob), self.stats["checkpoint_ms"])

    async def _commit_inputs(self, partition: int, part: _Part) -> None:
        if part.inputs:
            await self.consumer.commit_inputs({t: {partition: o}
                                               for t, o in part.inputs.items()})

    # -- rebalancing --------------------------------------------------------------------
    async def revoked(self, partitions: Collection[int]) -> None:
        """Checkpoint the revoked partitions. Their state stays here until the assignment
        says which come back (an eager rebalance revokes them all)."""
        async with self._lock:
            for p in sorted(set(partitions) & set(self.partitions)):
                await self._save(p, strict=False)
                self._parts[p].owned = False

    async def assigned(self, partitions: Collection[int]) -> None:
        """Drop what went elsewhere; keep what came back unchanged; restore the rest from
        its newest checkpoint and seek the consumer there."""
        async with self._lock:
            await self._start()
            mine = set(partitions)
            for p in [p for p in self._parts if p not in mine]:
                self.proc.drop(p)
                await self.outputs.close(p)
                del self._parts[p]
            committed = await self.consumer.committed(sorted(mine))
            for p in sorted(mine):
                part = self._parts.get(p)
                at = committed.get(p)
                if (part is not None and part.saved_offset == part.next_offset
                        and at is not None and at == part.next_offset):
                    part.owned = True  # back unchanged: its state is the checkpoint's
                    self.proc.windows.touch(p, now_ms())  # the rebalance was no silence
                    continue
                await self._restore(p, at)
            await self._release_held()

    async def _restore(self, partition: int, committed: int | None) -> None:
        await self.outputs.open(partition)  # exactly-once: fences the previous owner first
        self.proc.drop(partition)
        ck: Checkpoint | None = None
        stale: list[bytes] = []
        if self.state is not None:
            reader = await self.state.load(partition)
            ck, stale = reader.result(), reader.stale
        offset = committed
        inputs: dict[str, int] = {}
        if ck is not None:
            try:
                doc = decode_state(ck.blob)
                self.proc.restore(doc, partition, now_ms())
                inputs = {str(t): int(o) for t, o in doc.get("inputs", {}).items()}
            except StateVersionError as exc:
                raise StateVersionError(
                    f"checkpoint {ck.seq} of partition {partition} ({exc.what}; key "
                    f"{ck.app_id}/{partition} on {self.outputs.topics.streams_state})",
                    exc.found, exc.expected + ". To start this partition afresh from its "
                    "committed offset, delete the checkpoint: produce an empty value "
                    f"(tombstone) for key {ck.app_id}/{partition}, e.g. `echo "
                    f"'{ck.app_id}/{partition}:' | kcat -b BOOTSTRAP -t "
                    f"{self.outputs.topics.streams_state} -P -K: -Z`") from exc
            offset = ck.offset
            self.stats["restored"] += 1
            logger.info("partition %d: restored checkpoint %d (offset %d, taken at %d)",
                        partition, ck.seq, ck.offset, ck.taken_at_ms)
        if offset is not None and offset != committed:
            # Faust seeks every partition to its committed offset once the rebalance is
            # over: commit first, so that seek lands where this one does
            await self.consumer.commit({partition: offset})
            await self.consumer.seek(partition, offset)
        if inputs:  # the operator topics: where the checkpoint's state ends, as above
            await self.consumer.commit_inputs({t: {partition: o} for t, o in inputs.items()})
            for t, o in inputs.items():
                await self.consumer.seek(partition, o, t)
        self._parts[partition] = _Part(next_offset=offset, saved_offset=offset,
                                       seq=ck.seq if ck else 0, stale=stale, inputs=inputs)

    async def stop(self, flush: bool) -> Output:
        """Shutdown: with ``flush`` close every open window first (the end of a run);
        then checkpoint what is held. Returns what the flush produced."""
        out = Output()
        async with self._lock:
            for p in self.partitions:
                if flush:
                    got = self.proc.flush(now_ms(), p)
                    if got:
                        self._parts[p].dirty = True
                        await self.outputs.send(p, got)
                        out.aggregate_frames += got.aggregate_frames
                try:
                    await self._save(p, strict=True)
                except Exception:
                    logger.exception("shutdown: partition %d could not be checkpointed; the "
                                     "next owner replays it from the last checkpoint", p)
            if self._started:
                await self.outputs.stop()
                if self.state is not None:
                    await self.state.stop()
                self._started = False
        return out
