"""The KPI tallies go with the partition's checkpoint: a restart mid-shift continues them.

The recorded day of :mod:`tests.unit.test_kpis_day` is cut at 10:15 (after the fault, the
counter reset and inside the planned stop); the first worker's partition snapshot is
encoded as the keeper encodes it, restored into a fresh processor, and the rest of the
day fed there. The early shift's final record must equal the uninterrupted run's.
"""

from __future__ import annotations

import json

import pytest

from schemas.catalog import Catalog
from schemas.kpis import KpiRecord
from streams.processor import FrameProcessor
from streams.state import decode_state, encode_state
from tests.unit.test_kpis_day import D, H, M, catalog, day, final, frames, run

CUT = D + 10 * H + 15 * M


def feed(proc: FrameProcessor, payloads: list[tuple[int, bytes]], first_offset: int,
         clock: int, partition: int = 0) -> tuple[list[KpiRecord], int]:
    got: list[KpiRecord] = []
    for i, (ts, payload) in enumerate(payloads):
        clock = max(clock, ts + 100)
        out = proc.process(b"plc", payload, "t.readings", partition, first_offset + i, clock)
        assert not out.deadletters, out.deadletters[0].detail
        got += out.kpis
    return got, clock


def same(a: KpiRecord, b: KpiRecord) -> bool:
    return a.to_dict() | {"updated": 0} == b.to_dict() | {"updated": 0}


@pytest.mark.parametrize("arrays", [True, False], ids=["blob", "json"])
@pytest.mark.parametrize("lateness_ms", [1000, 2 * M])
def test_a_restart_mid_shift_continues_the_shift_tallies(arrays: bool,
                                                         lateness_ms: int) -> None:
    cat: Catalog = catalog(lateness_ms)
    payloads = frames(day(), M)
    cut = next(i for i, (ts, _) in enumerate(payloads) if ts >= CUT)
    _, whole = run(cat, payloads)
    want = final(whole, "early")

    first = FrameProcessor(cat)
    before, clock = feed(first, payloads[:cut], 0, 0)
    assert not any(r.final for r in before)  # the early shift is still open at the cut
    snap = first.snapshot(0, arrays=arrays)
    assert snap["plant"]["timelines"], "the open shift's tallies are in the checkpoint"
    if lateness_ms > 1000:  # readings inside the lateness wait: they are saved too
        assert any(s["pending"] for s in snap["plant"]["streams"])
    doc = decode_state(encode_state(snap)) if arrays else json.loads(
        json.dumps(snap, allow_nan=False))

    restarted = FrameProcessor(cat)
    restarted.restore(doc, 0, clock)
    after, _ = feed(restarted, payloads[cut:], cut, clock)
    assert same(final(after, "early"), want)
    assert restarted.counters()["kpi_late"] == 0

    # what the checkpoint saves: without it, the shift restarts from the cut
    afresh, _ = feed(FrameProcessor(cat), payloads[cut:], cut, clock)
    lost = final(afresh, "early")
    assert lost.run_s < want.run_s and lost.parts < want.parts


def test_an_older_checkpoint_without_kpis_restores_with_empty_tallies() -> None:
    cat = catalog()
    payloads = frames(day(), M)
    proc = FrameProcessor(cat)
    _, clock = feed(proc, payloads[:60], 0, 0)
    snap = proc.snapshot(0)
    del snap["plant"]  # as written before the KPIs were checkpointed
    fresh = FrameProcessor(cat)
    fresh.restore(snap, 0, clock)
    assert fresh.plant.kpis.streams == {} and fresh.plant.kpis.timelines == {}
    assert fresh.snapshot(0)["windows"] == proc.snapshot(0)["windows"]


def test_drop_forgets_a_partition_but_keeps_a_machine_another_one_feeds() -> None:
    cat = catalog()
    payloads = frames(day(), M)
    proc = FrameProcessor(cat)
    _, clock = feed(proc, payloads[:60], 0, 0, partition=0)
    assert proc.plant.kpis.timelines
    proc.drop(0)
    assert proc.plant.kpis.streams == {} and proc.plant.kpis.timelines == {}
    assert proc.plant.snapshot(0)["timelines"] == []
    # the timer of a dropped partition tallies nothing more
    assert proc.tick(clock + 10 * H, 0).kpis == []

    # the same machine fed on two partitions: dropping one keeps its timeline
    proc = FrameProcessor(cat)
    feed(proc, payloads[:30], 0, 0, partition=0)
    feed(proc, payloads[30:60], 30, clock, partition=1)
    proc.drop(0)
    assert list(proc.plant.kpis.streams) == [("plc", 1)] and proc.plant.kpis.timelines
    proc.plant.keep_partitions({2})  # a rebalance left this worker partition 2 only
    assert proc.plant.kpis.streams == {} and proc.plant.kpis.timelines == {}
