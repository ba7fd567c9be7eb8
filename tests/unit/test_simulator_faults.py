"""Fault plans: seeded random schedules and hand-written specs."""

from __future__ import annotations

import pytest

from connectors.simulator import Fault, FaultKind, FaultPlan, FaultSpecError
from connectors.simulator.models import model_of
from schemas.catalog import Catalog


def test_parse_whole_machine_fault_with_default_duration(catalog: Catalog) -> None:
    plan = FaultPlan.parse(["overheat@cnc-01:10"], catalog)
    assert plan.faults == [Fault(FaultKind.OVERHEAT, "cnc-01", None, 10.0, 60.0)]


def test_parse_stuck_sensor_with_duration(catalog: Catalog) -> None:
    plan = FaultPlan.parse(["stuck_sensor@press-01/oil_temp:5+30", "bearing_wear@press-01:2.5"],
                           catalog)
    assert plan.faults[0] == Fault(FaultKind.STUCK_SENSOR, "press-01", "oil_temp", 5.0, 30.0)
    assert plan.faults[1].start_s == 2.5
    assert plan.active(6.0) == plan.faults
    assert plan.active(35.0) == [plan.faults[1]]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("overheat cnc-01 10", "kind@machine"),
        ("melt@cnc-01:10", "unknown fault kind 'melt'"),
        ("overheat@cnc-99:10", "no machine 'cnc-99'"),
        ("pressure_loss@cnc-01:10", "does not apply to a cnc machine"),
        ("stuck_sensor@press-01:5", "needs an analog tag"),
        ("stuck_sensor@press-01/running:5", "needs an analog tag"),
        ("overheat@cnc-01/spindle_temp:5", "drop '/spindle_temp'"),
        ("overheat@cnc-01:5+0", "more than 0 seconds"),
    ],
)
def test_parse_errors_name_the_spec(catalog: Catalog, spec: str, says: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        FaultPlan.parse(["overheat@cnc-01:1", spec], catalog)
    assert spec in str(info.value) and says in str(info.value)
    assert isinstance(info.value, ValueError)


def test_random_plan_is_seeded_and_well_formed(catalog: Catalog) -> None:
    plan = FaultPlan.random(catalog, seed=7)
    assert plan == FaultPlan.random(catalog, seed=7)
    assert plan != FaultPlan.random(catalog, seed=8)
    assert plan.faults[0].start_s == 20.0
    assert len(plan.faults) == len(range(20, 3600, 45))
    machines = {m.name: m for m in catalog.machines}
    for a, b in zip(plan.faults, plan.faults[1:], strict=False):
        assert a.end_s <= b.start_s  # one at a time
    for f in plan.faults:
        model = model_of(machines[f.machine])
        if f.kind is FaultKind.PRESSURE_LOSS:
            assert model in ("press", "compressor")
        if f.kind is FaultKind.STUCK_SENSOR:
            assert f.tag is not None
            assert next(t for t in machines[f.machine].tags if t.name == f.tag).kind == "analog"
        else:
            assert f.tag is None
    assert {f.kind for f in plan.faults} == set(FaultKind)


def test_random_plan_respects_its_arguments(catalog: Catalog) -> None:
    plan = FaultPlan.random(catalog, seed=1, first_after_s=5, every_s=10, horizon_s=60)
    assert [f.start_s for f in plan.faults] == [5, 15, 25, 35, 45, 55]
    assert all(f.duration_s <= 5 for f in plan.faults)
    assert FaultPlan.random(catalog, seed=-3).faults  # any int seeds


def test_fault_str_is_a_spec(catalog: Catalog) -> None:
    f = Fault(FaultKind.STUCK_SENSOR, "press-01", "oil_temp", 5.0, 30.0)
    assert FaultPlan.parse([str(f)], catalog).faults == [f]
