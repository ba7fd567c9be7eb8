"""StateKeeper: messages that arrive before their partition's assignment is handled."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from schemas.catalog import Catalog
from streams.keeper import StateKeeper
from streams.processor import FrameProcessor, Output

TOPIC = "t.readings"


class _Outputs:
    """What the keeper hands its results to: recorded, acknowledged at once."""

    transactional = False

    def __init__(self) -> None:
        self.sent: list[tuple[int, Output]] = []

    async def start(self) -> None: ...

    async def open(self, partition: int) -> None: ...

    async def close(self, partition: int) -> None: ...

    async def send(self, partition: int, out: Output) -> None:
        self.sent.append((partition, out))

    async def checkpoint(self, partition: int, records: Sequence[Any], state_partition: int,
                         offset: int) -> None: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...

    def offsets(self) -> list[tuple[int, int]]:
        """(partition, offset) of each dead letter sent, in order."""
        return [(p, d.offset) for p, out in self.sent for d in out.deadletters]


class _Consumer:
    def __init__(self, committed: dict[int, int] | None = None) -> None:
        self.committed_at = dict(committed or {})
        self.sought: list[tuple[int, int]] = []

    async def committed(self, partitions: Collection[int]) -> dict[int, int | None]:
        return {p: self.committed_at.get(p) for p in partitions}

    async def commit(self, offsets: dict[int, int]) -> None:
        self.committed_at.update(offsets)

    async def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        self.sought.append((partition, offset))

    async def commit_inputs(self, offsets: dict[str, dict[int, int]]) -> None: ...

    def highwater(self, partition: int) -> int | None:
        return None


def _keeper(catalog: Catalog, consumer: _Consumer | None = None) -> tuple[StateKeeper,
                                                                          _Outputs]:
    outputs = _Outputs()
    keeper = StateKeeper(FrameProcessor(catalog), outputs,  # type: ignore[arg-type]
                         consumer or _Consumer(), app_id="unit", state=None, interval_s=0)
    return keeper, outputs


async def _bad(keeper: StateKeeper, partition: int, offset: int) -> None:
    """A message the processor answers with one dead letter: easy to follow."""
    await keeper.process(b"k", b"{not json", TOPIC, partition, offset)


def test_messages_before_the_assignment_are_held_then_processed_in_order(
        catalog: Catalog) -> None:
    async def main() -> None:
        keeper, outputs = _keeper(catalog)
        for offset in (0, 1):
            await _bad(keeper, 1, offset)  # fetched before the assignment was handled
        await _bad(keeper, 2, 0)  # a partition that goes to another worker
        assert outputs.sent == [] and keeper.stats["held"] == 3
        await keeper.assigned([0, 1])
        await _bad(keeper, 1, 2)
        assert outputs.offsets() == [(1, 0), (1, 1), (1, 2)]
        assert keeper.offsets()["1"]["next"] == 3
        assert keeper.stats["skipped"] == 0
    asyncio.run(main())


def test_messages_between_a_revocation_and_the_assignment_are_not_lost(
        catalog: Catalog) -> None:
    async def main() -> None:
        consumer = _Consumer()
        keeper, outputs = _keeper(catalog, consumer)
        await keeper.assigned([0])
        await _bad(keeper, 0, 0)
        await keeper.revoked([0])  # commits offset 1
        await _bad(keeper, 0, 1)  # still delivered during the rebalance
        await keeper.assigned([0])  # back unchanged
        await _bad(keeper, 0, 1)  # the consumer sought to the committed offset: again
        assert outputs.offsets() == [(0, 0), (0, 1)]  # once each
        assert keeper.stats["replayed"] == 1 and consumer.committed_at == {0: 1}
    asyncio.run(main())


def test_held_messages_after_the_restored_offset_wait_for_the_seek(catalog: Catalog) -> None:
    """The consumer had fetched from further on than where the partition resumes: those
    are let go (the seek brings them again, in order) rather than processed with a gap."""
    async def main() -> None:
        keeper, outputs = _keeper(catalog, _Consumer(committed={0: 5}))
        await _bad(keeper, 0, 7)
        await keeper.assigned([0])
        assert outputs.sent == []
        for offset in range(5, 8):
            await _bad(keeper, 0, offset)
        assert outputs.offsets() == [(0, 5), (0, 6), (0, 7)]
    asyncio.run(main())
