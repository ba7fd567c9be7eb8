"""OEE and energy of a recorded day, against a hand computation, through FrameProcessor.

The day (UTC, 2025-03-03), machine m1 (ideal cycle 60 s, power tag in kW), shifts early
06:00-14:00 with a planned stop 10:00-10:30, late 14:00-22:00, night 22:00-06:00:

- state: running from 06:00; fault 08:00-08:30; idle (running 0) 12:00-12:30.
- parts counter every 10 min from 06:00 (1000, +7 each), reset by a PLC restart just
  before 09:00: it reads 4 at 09:00 and goes on +7 from there.
- rejects counter every 30 min from 06:00 (50, +1 each).
- power every minute at :30 s: 12 kW, 3 kW for the samples within 08:00-08:30; none
  between 16:00 and 16:10 (a gap longer than the 60 s max gap).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import yaml

from schemas.catalog import Catalog
from schemas.kpis import KpiRecord
from schemas.readings import FrameBuilder
from streams.processor import FrameProcessor

D = int(datetime(2025, 3, 3, tzinfo=UTC).timestamp() * 1000)
H, M, S = 3_600_000, 60_000, 1000
M1 = "acme/p1/a1/l1/m1"

CATALOG = """
enterprise: acme
site: p1
sources:
  - {name: plc, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840/"}
machines:
  - name: m1
    area: a1
    line: l1
    source: plc
    tags:
      - {name: running, kind: state, node: "ns=2;s=running"}
      - {name: fault, kind: state, node: "ns=2;s=fault"}
      - {name: parts, kind: counter, node: "ns=2;s=parts"}
      - {name: rejects, kind: counter, node: "ns=2;s=rejects"}
      - {name: power, unit: kW, node: "ns=2;s=power"}
      - {name: temp, unit: degC, node: "ns=2;s=temp"}
    oee: {ideal_cycle_s: 60, parts: parts, rejects: rejects}
    energy: {power: power}
kpis:
  timezone: UTC
  shifts:
    - {name: early, start: "06:00", end: "14:00",
       planned_stops: [{name: break, start: "10:00", end: "10:30"}]}
    - {name: late, start: "14:00", end: "22:00"}
    - {name: night, start: "22:00", end: "06:00"}
  interval_s: 600
  energy_max_gap_s: 60
streams:
  lateness_ms: LATENESS
"""


def catalog(lateness_ms: int = 1000) -> Catalog:
    return Catalog.model_validate(yaml.safe_load(CATALOG.replace("LATENESS", str(lateness_ms))))


def day() -> list[tuple[str, int, float]]:
    """The readings of the day, in time order: (tag name, ts, value)."""
    rows: list[tuple[str, int, float]] = [("running", D + 6 * H, 1.0), ("fault", D + 6 * H, 0.0),
                                          ("fault", D + 8 * H, 1.0),
                                          ("fault", D + 8 * H + 30 * M, 0.0),
                                          ("running", D + 12 * H, 0.0),
                                          ("running", D + 12 * H + 30 * M, 1.0)]
    parts = 1000.0
    for k in range(63):  # 06:00 .. 16:20
        t = D + 6 * H + k * 10 * M
        if t == D + 9 * H:
            parts = 4.0  # the counter restarted from 0 and counted 4 parts since
        elif k:
            parts += 7
        rows.append(("parts", t, parts))
    rows += [("rejects", D + 6 * H + k * 30 * M, 50.0 + k) for k in range(21)]
    for k in range(6 * 60, 16 * 60 + 21):  # power at hh:mm:30, 06:00:30 .. 16:20:30
        t = D + k * M + 30 * S
        if 16 * 60 <= k < 16 * 60 + 10:
            continue  # no power readings 16:00:30 .. 16:09:30
        rows.append(("power", t, 3.0 if D + 8 * H <= t <= D + 8 * H + 30 * M else 12.0))
    rows += [("temp", D + 6 * H + k * M, 40.0) for k in range(0, 10 * 60 + 21, 5)]
    return sorted(rows, key=lambda r: r[1])


def frames(rows: list[tuple[str, int, float]], per_ms: int) -> list[tuple[int, bytes]]:
    """The rows as frames of ``per_ms`` of source time each: (max ts, payload)."""
    out: list[tuple[int, bytes]] = []
    fb = FrameBuilder("plc", epoch=1, max_readings=100_000)
    bucket = None
    for name, ts, v in rows:
        if bucket is not None and ts // per_ms != bucket:
            frame = fb.flush()
            assert frame is not None
            out.append((max(frame.ts), frame.encode()))
        bucket = ts // per_ms
        fb.add(f"{M1}/{name}", ts, v)
    frame = fb.flush()
    assert frame is not None
    out.append((max(frame.ts), frame.encode()))
    return out


def run(cat: Catalog, payloads: list[tuple[int, bytes]]) -> tuple[FrameProcessor,
                                                                   list[KpiRecord]]:
    proc = FrameProcessor(cat)
    got: list[KpiRecord] = []
    clock = 0
    for offset, (ts, payload) in enumerate(payloads):
        clock = max(clock, ts + 100)  # replayed as if live: the clock follows the data
        out = proc.process(b"plc", payload, "t.readings", 0, offset, clock)
        assert not out.deadletters, out.deadletters[0].detail
        got += out.kpis
    return proc, got


def final(records: list[KpiRecord], shift: str) -> KpiRecord:
    (rec,) = [r for r in records if r.shift == shift and r.final]
    return rec


def test_the_recorded_day_by_hand() -> None:
    proc, records = run(catalog(), frames(day(), M))
    early = final(records, "early")
    assert (early.shift_start, early.shift_end) == (D + 6 * H, D + 14 * H)
    # time: 8 h = 28800 s; planned stop 1800; fault 08:00-08:30 1800; idle 12:00-12:30
    # 1800; run = 28800 - 3 * 1800 = 23400 s; planned = run + fault + idle = 27000 s
    assert (early.run_s, early.fault_s, early.idle_s) == (23400, 1800, 1800)
    assert (early.stopped_s, early.unknown_s, early.maintenance_s) == (1800, 0, 0)
    assert early.planned_s == 27000
    assert early.availability == pytest.approx(23400 / 27000, abs=1e-6)
    # parts: 47 readings 06:10 .. 13:50 rise 7 each = 329, but the one at 09:00 comes after
    # a reset and counts only its 4: 329 - 7 + 4 = 326 (the 14:00 reading is the late
    # shift's). Rejects: 15 readings 06:30 .. 13:30, +1 each. Good: 326 - 15 = 311.
    assert (early.parts, early.rejects, early.good) == (326, 15, 311)
    assert early.performance == pytest.approx(326 * 60 / 23400, abs=1e-6)
    assert early.quality == pytest.approx(311 / 326, abs=1e-6)
    # oee = run/planned * parts*60/run * good/parts = good * 60 / planned
    assert early.oee == pytest.approx(311 * 60 / 27000, abs=1e-5)
    # energy: 479 one-minute segments from 06:00:30 to 13:59:30: 2 ramps 12<->3 kW (7.5 kW
    # average), 29 at 3 kW, 448 at 12 kW; and half of the segment 13:59:30-14:00:30 that
    # crosses the shift end, at 12 kW. (448*12 + 29*3 + 2*7.5) / 60 + 12 * 30/3600
    assert early.kwh == pytest.approx((448 * 12 + 29 * 3 + 2 * 7.5) / 60 + 0.1, abs=1e-6)
    assert early.kwh_per_part == pytest.approx((early.kwh or 0) / 326, abs=1e-6)
    assert early.energy_gap_s == 0 and early.power_kw == 12.0

    late = [r for r in records if r.shift == "late"][-1]
    assert not late.final and late.through <= D + 16 * H + 20 * M + 30 * S
    # parts from 14:00 (the reading at the boundary) to the last one before `through`
    n = len([k for k in range(48, 63) if D + 6 * H + k * 10 * M <= late.through])
    assert late.parts == 7 * n and late.idle_s == 0 and late.fault_s == 0
    # the 11-minute hole 15:59:30 .. 16:10:30 is not integrated: counted as a gap
    assert late.energy_gap_s == 660
    assert proc.counters()["kpi_late"] == 0
    # early shift records on the way: partial records every 10 min, then exactly one final
    assert sum(r.final for r in records if r.shift == "early") == 1
    assert any(not r.final for r in records if r.shift == "early")


def test_framing_and_order_within_the_lateness_do_not_change_the_result() -> None:
    _, by_minute = run(catalog(), frames(day(), M))
    _, by_hour = run(catalog(), frames(day(), H))
    # 2 min lateness: frames of 30 s swapped pairwise arrive out of order, within it
    shuffled = frames(day(), 30 * S)
    random.Random(3).shuffle(pairs := [shuffled[i:i + 2] for i in range(0, len(shuffled), 2)])
    swapped = [f for pair in pairs for f in reversed(pair)]
    swapped.sort(key=lambda f: f[0] // (2 * M))  # reordered within a 2-minute stretch only
    proc, late_tolerant = run(catalog(lateness_ms=2 * M), swapped)
    want = final(by_minute, "early")
    for other in (final(by_hour, "early"), final(late_tolerant, "early")):
        assert other.to_dict() | {"updated": 0} == want.to_dict() | {"updated": 0}
    assert proc.counters()["kpi_late"] == 0


def test_a_reading_older_than_the_tally_is_late_and_not_applied() -> None:
    cat = catalog()
    rows = day()
    payloads = frames(rows, M)
    fb = FrameBuilder("plc", epoch=2)
    fb.add(f"{M1}/fault", D + 7 * H, 1.0)  # an hour in the past, after 16:00: late
    late = fb.flush()
    assert late is not None
    proc, records = run(cat, [*payloads, (D + 7 * H, late.encode())])
    assert proc.counters()["kpi_late"] == 1
    assert final(records, "early").fault_s == 1800
