"""The simulator's physics, stepped without servers: deterministic, plausible, faults visible."""

from __future__ import annotations

import numpy as np
import pytest

from connectors.simulator import Fault, FaultKind, FaultPlan, Plant
from connectors.simulator.models import model_of
from connectors.simulator.physics import CncModel, make_model
from connectors.simulator.registers import decode, encode
from schemas.catalog import Catalog, ModbusRegister

DT = 0.1


def run(plant: Plant, seconds: float, tag: str) -> np.ndarray:
    """Step ``seconds`` of simulated time; the tag's values, one per step."""
    path = plant.catalog.resolve(tag)
    return np.array([plant.step(DT)[path] for _ in range(round(seconds / DT))])


def quiet(catalog: Catalog, *faults: str) -> Plant:
    return Plant(catalog, seed=7, faults=FaultPlan.parse(list(faults), catalog))


def test_same_seed_same_values(catalog: Catalog) -> None:
    a, b = Plant(catalog, seed=3), Plant(catalog, seed=3)
    for _ in range(300):
        assert a.step(DT) == b.step(DT)
    c = Plant(catalog, seed=4)
    assert c.step(DT) != Plant(catalog, seed=3).step(DT)


def test_machines_get_different_noise(catalog: Catalog) -> None:
    cnc = next(m for m in catalog.machines if model_of(m) == "cnc")
    other = cnc.model_copy(update={"name": "cnc-02"})
    a, b = make_model(cnc, 7), make_model(other, 7)
    assert a.step(DT, DT)["spindle_temp"] != b.step(DT, DT)["spindle_temp"]


def test_normal_operation_is_in_range(catalog: Catalog) -> None:
    plant = quiet(catalog)
    temps = run(plant, 60, "cnc-01/spindle_temp")
    assert temps.min() > 50 and temps.max() < 70
    assert temps.std() > 0.05  # noisy, not constant
    for machine in ("cnc-01", "press-01", "compressor-01"):
        vib = run(plant, 10, f"{machine}/vibration_rms")
        assert 1.2 < vib.mean() < 3.0, machine
    disch = run(plant, 30, "compressor-01/discharge_temp")
    assert 74 < disch.mean() < 86
    assert abs(run(plant, 30, "compressor-01/discharge_pressure").mean() - 8.0) < 0.2
    press = run(plant, 30, "press-01/hydraulic_pressure")
    assert 175 < press.mean() < 205 and press.max() - press.min() > 5  # stroke cycle
    assert plant.value("cnc-01/running") == 1.0 and plant.value("cnc-01/fault") == 0.0


def test_counters_increase(catalog: Catalog) -> None:
    plant = quiet(catalog)
    start = {t: plant.value(t) for t in
             ("cnc-01/part_count", "press-01/stroke_count", "compressor-01/running_hours")}
    run(plant, 120, "cnc-01/part_count")
    for tag, before in start.items():
        assert plant.value(tag) > before, tag
    assert plant.value("cnc-01/part_count") == int(plant.value("cnc-01/part_count"))


def test_spindle_speed_tracks_setpoint_with_lag(catalog: Catalog) -> None:
    plant = quiet(catalog)
    plant.set_setpoint("cnc-01/spindle_speed_sp", 5000)
    speed = run(plant, 20, "cnc-01/spindle_speed")
    assert speed[0] > 7000  # a lag, not a jump
    assert abs(speed[-1] - 5000) < 30
    assert plant.value("cnc-01/spindle_speed_sp") == 5000


def test_setpoint_is_clamped_to_its_limits(catalog: Catalog) -> None:
    plant = quiet(catalog)
    plant.set_setpoint("press-01/pressure_sp", 1000)
    assert plant.setpoint("press-01/pressure_sp") == 250  # the tag's max


def test_overheat_then_lower_speed_cools_the_spindle(catalog: Catalog) -> None:
    plant = quiet(catalog, "overheat@cnc-01:10+600")
    before = run(plant, 10, "cnc-01/spindle_temp")
    assert before.max() < 85
    hot = run(plant, 10, "cnc-01/spindle_temp")  # within 10 s of onset
    assert hot.max() > 95
    assert plant.value("cnc-01/fault") == 1.0
    assert [f.kind for f in plant.active_faults()] == [FaultKind.OVERHEAT]
    plant.set_setpoint("cnc-01/spindle_speed_sp", 5000)  # what the rule does
    cooled = run(plant, 30, "cnc-01/spindle_temp")
    assert cooled[-50:].max() < 85  # still overheating, but below the limit


def test_overheat_on_a_compressor_heats_the_discharge(catalog: Catalog) -> None:
    plant = quiet(catalog, "overheat@compressor-01:0+600")
    assert run(plant, 10, "compressor-01/discharge_temp").max() > 95
    assert run(plant, 20, "compressor-01/discharge_temp")[-20:].min() > 100
    plant.set_setpoint("compressor-01/pressure_sp", 6.5)  # what the rule does
    assert run(plant, 30, "compressor-01/discharge_temp")[-50:].max() < 100


def test_pressure_loss_drops_the_press_pressure(catalog: Catalog) -> None:
    plant = quiet(catalog, "pressure_loss@press-01:10+30")
    normal = run(plant, 10, "press-01/hydraulic_pressure")
    lost = run(plant, 30, "press-01/hydraulic_pressure")[50:]
    assert lost.mean() < 0.7 * normal.mean()
    assert lost.std() > normal.std()  # leaks are noisy
    recovered = run(plant, 20, "press-01/hydraulic_pressure")[100:]
    assert recovered.mean() > 0.9 * normal.mean()


def test_bearing_wear_drifts_vibration_up(catalog: Catalog) -> None:
    plant = quiet(catalog, "bearing_wear@cnc-01:0+120")
    vib = run(plant, 60, "cnc-01/vibration_rms")
    gain = vib[-50:].mean() - vib[:50].mean()
    assert 2.0 < gain < 4.0  # a few mm/s per minute


def test_stuck_sensor_freezes_only_its_tag(catalog: Catalog) -> None:
    plant = quiet(catalog, "stuck_sensor@press-01/oil_temp:5+20")
    run(plant, 5, "press-01/oil_temp")
    stuck = run(plant, 19.9, "press-01/oil_temp")  # t = 5.1 .. 24.9
    assert np.ptp(stuck) == 0.0  # exactly the same value: zero variance
    assert run(plant, 10, "press-01/motor_current").std() > 0
    assert run(plant, 10, "press-01/oil_temp").std() > 0  # unstuck from t = 25


def test_model_steps_without_a_plant(catalog: Catalog) -> None:
    cnc = next(m for m in catalog.machines if model_of(m) == "cnc")
    model = CncModel(cnc, np.random.default_rng(1))
    model.set_faults([Fault(FaultKind.OVERHEAT, "cnc-01", None, 0.0, 60.0)])
    out = {}
    for i in range(100):
        out = model.step(DT, (i + 1) * DT)
    assert set(out) == {t.name for t in cnc.tags}
    assert out["spindle_temp"] > 95 and out["fault"] == 1.0


@pytest.mark.parametrize(
    ("kind", "value"),
    [("float32", 201.5), ("float32", -3.25), ("uint32", 218785), ("uint32", 70000),
     ("uint16", 65535), ("int16", -2), ("bool", 1.0)],
)
def test_register_round_trip(kind: str, value: float) -> None:
    reg = ModbusRegister(table="input", address=0, type=kind)  # type: ignore[arg-type]
    words = encode(value, reg)
    assert len(words) == (reg.width if kind != "bool" else 1)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, reg) == value


def test_float32_is_high_word_first() -> None:
    reg = ModbusRegister(table="input", address=0, type="float32")
    assert encode(1.0, reg) == [0x3F80, 0x0000]
    reg32 = ModbusRegister(table="input", address=0, type="uint32")
    assert encode(0x00012345, reg32) == [0x0001, 0x2345]
