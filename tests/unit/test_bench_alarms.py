"""``millstream bench alarms``: its fault schedule, its scoring, and a short run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise

import pytest

from connectors.simulator.faults import Fault, FaultKind, FaultPlan, applies_to
from millstream.bench.alarms import figures, quiet_machine_hours
from millstream.bench.alarms_plan import LEAD_IN_S, ScheduleError, fault_schedule
from millstream.bench.plant_replay import T0_MS, Replay
from schemas.catalog import Catalog

HOUR = 3600.0
OVERHEAT, STUCK = FaultKind.OVERHEAT, FaultKind.STUCK_SENSOR


def test_schedule_has_every_kind_on_machines_it_applies_to(catalog: Catalog) -> None:
    plan = fault_schedule(catalog, 3, 8 * HOUR)
    machines = {m.name: m for m in catalog.machines}
    per_kind = {k: [f for f in plan.faults if f.kind is k] for k in FaultKind}
    assert all(len(fs) >= 5 for fs in per_kind.values()), per_kind
    for f in plan.faults:
        assert applies_to(f.kind, machines[f.machine]), f
        analog = {t.name for t in machines[f.machine].tags if t.kind == "analog"}
        assert (f.tag in analog) if f.kind is STUCK else f.tag is None, f
    # over 8 hours each kind visits every machine it applies to
    for k, fs in per_kind.items():
        assert {f.machine for f in fs} == {m.name for m in catalog.machines
                                           if applies_to(k, m)}, k


@pytest.mark.parametrize("hours", [0.22, 0.5, 8.0])
def test_schedule_is_one_fault_at_a_time_with_quiet_between(catalog: Catalog,
                                                            hours: float) -> None:
    plan = fault_schedule(catalog, 11, hours * HOUR)
    assert {f.kind for f in plan.faults} == set(FaultKind)
    assert plan.faults[0].start_s >= LEAD_IN_S - 0.1
    assert plan.faults[-1].end_s <= hours * HOUR
    slot = (hours * HOUR - LEAD_IN_S) / len(plan.faults)
    for a, b in pairwise(plan.faults):
        assert b.start_s - a.end_s >= 0.4 * slot - 0.2, (a, b)  # nowhere two at once
    assert all(f.duration_s >= 0.15 * slot - 0.1 for f in plan.faults)


def test_schedule_is_deterministic_per_seed(catalog: Catalog) -> None:
    one = fault_schedule(catalog, 5, 2 * HOUR).faults
    assert one == fault_schedule(catalog, 5, 2 * HOUR).faults
    assert one != fault_schedule(catalog, 6, 2 * HOUR).faults


def test_schedule_too_short_or_without_a_kind_says_what_to_do(catalog: Catalog) -> None:
    with pytest.raises(ScheduleError, match=r"use --hours 0\.22 or more"):
        fault_schedule(catalog, 1, 0.2 * HOUR)
    cnc_only = catalog.model_copy(update={
        "machines": [m for m in catalog.machines if m.name == "cnc-01"], "rules": []})
    with pytest.raises(ScheduleError, match="pressure_loss"):
        fault_schedule(cnc_only, 1, 8 * HOUR)


def _run(catalog: Catalog, faults: list[Fault], duration_s: float) -> Replay:
    return Replay(catalog, FaultPlan(faults), duration_s)


def test_quiet_hours_are_each_machine_outside_its_own_faults(catalog: Catalog) -> None:
    run = _run(catalog, [
        Fault(OVERHEAT, "cnc-01", None, 100, 100),  # [100, 230] with the 30 s grace
        Fault(STUCK, "cnc-01", "spindle_temp", 150, 250),  # overlaps it: [100, 430]
        Fault(OVERHEAT, "press-01", None, 3590, 60),  # cut at the end: 10 s
        Fault(OVERHEAT, "press-01", None, 3600, 60),  # after the end: not in the run
    ], 3600)
    assert quiet_machine_hours(run) == pytest.approx((4 * 3600 - 330 - 10) / 3600)


def test_figures_match_events_by_machine_and_window(catalog: Catalog) -> None:
    cnc, press = (catalog.machine_path(m) for m in catalog.machines[:2])
    run = _run(catalog, [Fault(OVERHEAT, "cnc-01", None, 100, 50),
                         Fault(STUCK, "press-01", "oil_temp", 400, 50)], 1000)

    def at(s: float) -> int:
        return T0_MS + round(s * 1000)
    events = [
        (cnc, at(104.5)), (cnc, at(180)),  # two alarms of the overheat, the last at end+30
        (cnc, at(180.001)),  # just after its grace: false
        (press, at(120)),  # another machine during the overheat: false
        (press, at(399.9)),  # before the stuck sensor started: false, and it is missed
    ]
    got = figures(run, events)
    assert (got["incidents"], got["detected"], got["detection_rate"]) == (2, 1, 0.5)
    assert got["median_ttd_s"] == 4.5 and got["alarms_per_incident"] == 2.0
    assert got["false_alarms"] == 3
    quiet_h = (4 * 1000 - 80 - 80) / 3600
    assert got["false_alarms_per_machine_hour"] == pytest.approx(3 / quiet_h, abs=1e-3)
    assert got["per_kind"] == {
        "overheat": {"incidents": 1, "detected": 1, "median_ttd_s": 4.5},
        "stuck_sensor": {"incidents": 1, "detected": 0, "median_ttd_s": None}}


def test_bench_alarms_through_the_cli_ends_with_its_json() -> None:
    """The shortest run (0.22 simulated hours, a fault of each kind): about 15 s idle."""
    done = subprocess.run(
        [sys.executable, "-m", "millstream.cli", "bench", "alarms", "--json", "--hours",
         "0.22", "--seed", "3"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "alarms" and result["incidents"] == len(FaultKind)
    assert set(result["per_kind"]) == {k.value for k in FaultKind}
    assert "simulated hours" in done.stderr  # progress
    base = result["baseline"]
    for figs in (result, base):
        assert 0 <= figs["detection_rate"] <= 1
        assert figs["detected"] == round(figs["detection_rate"] * len(FaultKind))
        assert figs["false_alarms_per_machine_hour"] >= 0
        assert figs["median_ttd_s"] is None or 0 <= figs["median_ttd_s"] <= 250
        assert figs["alarms_per_incident"] is None or figs["alarms_per_incident"] >= 1
    assert 0 < result["machine_hours_outside_faults"] < 4 * 0.22
    # every episode comes from anomaly records: the raw records are at least as many
    assert result["anomaly_records"] >= result["episodes"] >= result["detected"]
    too_short = subprocess.run(
        [sys.executable, "-m", "millstream.cli", "bench", "alarms", "--json", "--hours", "0.1"],
        capture_output=True, text=True, timeout=120, check=False)
    assert too_short.returncode == 2 and "--hours 0.22" in too_short.stderr
