"""``millstream bench ingest``'s pure parts: the generated catalog, the tallies, the targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from connectors.modbus_map import plan_reads
from millstream.bench import BENCHMARKS
from millstream.bench._proc import cpu_seconds, peak_rss_mb
from millstream.bench.ingest import _met
from millstream.bench.ingest_catalog import (
    MODBUS_SOURCE,
    OPCUA_SOURCE,
    TAGS_PER_MACHINE,
    modbus_layout,
    write_catalog,
)
from millstream.bench.ingest_count import ModbusTally, OpcUaTally, SeqCheck
from millstream.cli import build_parser
from schemas.catalog import load_catalog
from schemas.readings import FrameBuilder, Quality, ReadingFrame


def _frames(readings: list[tuple[str, int, float | None]], *, source: str = "s",
            size: int = 3) -> list[ReadingFrame]:
    b = FrameBuilder(source=source, epoch=1, max_readings=size)
    out = []
    for tag, ts, value in readings:
        b.add(tag, ts, value, Quality.GOOD if value is not None else Quality.BAD)
        if b.full:
            out.append(b.flush())
    if (last := b.flush()) is not None:
        out.append(last)
    return [f for f in out if f is not None]


def test_ingest_is_a_benchmark_with_its_own_options() -> None:
    assert "ingest" in BENCHMARKS
    args = build_parser().parse_args(["bench", "ingest", "--tags", "300", "--seconds", "7"])
    assert (args.tags, args.seconds) == (300, 7)


def test_modbus_layout_packs_registers_with_small_gaps() -> None:
    layout = modbus_layout(500)
    assert layout and all(a + w <= 500 for _, a, _, w in layout)
    ends = [a + w for _, a, _, w in layout]
    gaps = [b - e for e, (_, b, _, _) in zip(ends, layout[1:], strict=False)]
    assert min(gaps) == 0 and 0 < max(gaps) <= 4  # never overlapping; gaps a read may span
    assert len({name for name, *_ in layout}) == len(layout)


def test_generated_catalog_loads_and_coalesces(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "c.yaml", opcua_tags=250,
                         opcua_endpoint="opc.tcp://127.0.0.1:4840/bench/", interval_ms=200,
                         modbus_machines=3, modbus_span=1000, modbus_endpoint="127.0.0.1:5020")
    catalog = load_catalog(path)
    opc = catalog.machines_of(OPCUA_SOURCE)
    assert [len(m.tags) for m in opc] == [TAGS_PER_MACHINE, TAGS_PER_MACHINE, 50]
    assert len({t.node for m in opc for t in m.tags}) == 250
    assert catalog.source(OPCUA_SOURCE).interval_ms == 200
    plcs = catalog.machines_of(MODBUS_SOURCE)
    assert [m.unit_id for m in plcs] == [1, 2, 3]
    regs = [(catalog.tag_path(plcs[0], t), t.modbus) for t in plcs[0].tags if t.modbus]
    blocks = plan_reads(regs, max_gap=catalog.source(MODBUS_SOURCE).max_gap)
    assert len(blocks) <= 1000 // 120 + 1  # a machine in a handful of reads, not hundreds
    assert sum(len(b.items) for b in blocks) == len(regs)


def test_seq_check_counts_gaps_and_repeats() -> None:
    frames = _frames([(f"t{i}", 1, float(i)) for i in range(9)])  # seq 1-3, 4-6, 7-9
    check = SeqCheck()
    for f in (frames[0], frames[2], frames[2]):
        check.add(f)
    assert (check.gaps, check.repeats) == (3, 3)  # 4-6 never came; 7-9 came twice
    other = SeqCheck()
    for f in frames:
        other.add(f)
    assert (other.gaps, other.repeats) == (0, 0)


def test_opcua_tally_says_which_changes_arrived() -> None:
    readings = [("a", 100, 0.0), ("b", 100, 0.0),  # initial values: not changes of the run
                ("a", 1000, 5.0), ("b", 1000, 5.0), ("a", 2000, 6.0),
                ("a", 2000, 6.0),  # again
                ("b", 3000, 7.0), ("zz", 3000, 6.0), ("a", 3000, None)]
    tally = OpcUaTally(["a", "b"], first=5, last=7)
    for i, f in enumerate(_frames(readings)):
        tally.add(f, 3000 + 10 * i)
    assert tally.distinct == 4  # a5 a6 b5 b7; a7 and b6 lost
    assert 2 * 3 - tally.distinct == 2
    assert (tally.duplicates, tally.other, tally.bad) == (1, 4, 1)
    assert tally.last_created_ms == 3020
    # CreateTime - ts of a5, b5, a6, b7
    assert tally.latency() == {"p50": 1505.0, "p99": 2009.7, "max": 2010.0}
    assert OpcUaTally(["a"], 1, 2).latency() is None


def test_modbus_tally_counts_registers_in_the_window() -> None:
    tally = ModbusTally({"r1": 1, "r2": 2})
    readings = [("r1", 999, 1.0), ("r2", 1000, 1.0), ("r1", 1500, None), ("r2", 1999, 2.0),
                ("r1", 2000, 3.0), ("unknown", 1500, 4.0)]
    for f in _frames(readings):
        tally.add(f, 0)
    assert tally.window(1000, 2000) == {"registers": 4, "readings": 3}
    assert tally.bad == 1


def test_targets_follow_the_issue() -> None:
    good = {"opcua_lost": 0, "opcua_vs_bare": 0.95, "modbus_registers_per_s": 120_000,
            "connector_peak_rss_mb": 210.0, "mqtt_readings_per_s": 60_000}
    assert all(_met(good).values())
    bad = {"opcua_lost": 3, "opcua_vs_bare": 0.5, "modbus_registers_per_s": 90_000,
           "mqtt_readings_per_s": 40_000}
    met = _met(bad)
    assert met["opcua_lost_zero"] is False and met["opcua_vs_bare_0_9"] is False
    assert met["modbus_100k_registers_per_s"] is False and met["connector_rss_500_mib"] is None
    assert met["mqtt_50k_readings_per_s"] is False
    json.dumps(met)


def test_proc_readings_of_a_live_and_a_gone_process() -> None:
    rss, cpu = peak_rss_mb(os.getpid()), cpu_seconds(os.getpid())
    assert rss is not None and rss > 1 and cpu is not None and cpu > 0
    assert peak_rss_mb(2**22 + 7) is None and cpu_seconds(2**22 + 7) is None
