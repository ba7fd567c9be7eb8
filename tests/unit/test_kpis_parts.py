"""The KPI pieces on their own: shift calendar, counters, energy, catalog checks, idle."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from schemas.catalog import Catalog
from schemas.catalog_kpis import KpiSpec
from schemas.readings import Quality
from streams.energy import integrate
from streams.kpis import KpiEngine
from streams.oee import counter_increase
from streams.roles import PlantRoles, Role
from streams.shifts import ShiftCalendar
from tests.unit.test_kpis_day import CATALOG, M1, D, H, M, S
from tests.unit.test_kpis_day import catalog as day_catalog


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_a_night_shift_over_the_spring_change_lasts_seven_hours() -> None:
    cal = ShiftCalendar(KpiSpec.model_validate(dict(timezone="Europe/Berlin", shifts=[
        {"name": "day", "start": "06:00", "end": "22:00",
         "planned_stops": [{"start": "12:00", "end": "12:45"}]},
        {"name": "night", "start": "22:00", "end": "06:00",
         "planned_stops": [{"start": "02:00", "end": "02:30"}]}])))
    night = cal.at(ms("2025-03-30T00:30:00+01:00"))
    assert night is not None and night.name == "night"
    assert (night.start, night.end) == (ms("2025-03-29T22:00:00+01:00"),
                                        ms("2025-03-30T06:00:00+02:00"))
    assert night.end - night.start == 7 * H
    # 02:00 does not exist that night (clocks jump to 03:00): the stop is placed by the
    # offset before the change, i.e. at 03:00-03:30 summer time, and still lasts 30 min
    assert night.stopped_ms(night.start, night.end) == 30 * M
    day = cal.at(ms("2025-03-30T13:00:00+02:00"))
    assert day is not None and day.stopped_ms(day.start, day.end) == 45 * M
    assert [s.name for s in cal.between(night.start - 1, day.end)] == ["day", "night", "day"]


def test_time_between_shifts_belongs_to_none() -> None:
    only = {"name": "only", "start": "08:00", "end": "16:00"}
    cal = ShiftCalendar(KpiSpec.model_validate({"shifts": [only]}))
    assert cal.at(D + 7 * H) is None and cal.at(D + 8 * H) is not None
    assert cal.at(D + 16 * H) is None


@pytest.mark.parametrize(("kpis", "error"), [
    ({"timezone": "Mars/Olympus"}, "not an IANA zone"),
    ({"shifts": [{"name": "a", "start": "06:00", "end": "14:00"},
                 {"name": "b", "start": "13:00", "end": "22:00"}]}, "overlap"),
    ({"shifts": [{"name": "a", "start": "22:00", "end": "06:00"},
                 {"name": "b", "start": "05:00", "end": "07:00"}]}, "overlap"),
    ({"shifts": [{"name": "a", "start": "6:00", "end": "14:00"}]}, "HH:MM"),
    ({"shifts": [{"name": "a", "start": "06:00", "end": "14:00",
                  "planned_stops": [{"start": "15:00", "end": "15:30"}]}]}, "not inside"),
])
def test_bad_calendars_are_refused_with_the_value(kpis: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        KpiSpec.model_validate(kpis)


@pytest.mark.parametrize(("change", "error"), [
    ("oee: {ideal_cycle_s: 60, parts: parts, rejects: rejects}",
     "oee: {ideal_cycle_s: 60, parts: temp}"),
    ("energy: {power: power}", "energy: {power: temp}"),
    ("energy: {power: power}", "energy: {current: temp}"),
])
def test_catalog_names_the_bad_kpi_tag(change: str, error: str) -> None:
    doc = yaml.safe_load(CATALOG.replace("LATENESS", "1000").replace(change, error))
    with pytest.raises(ValidationError, match=r"kind|unit|voltage_v"):
        Catalog.model_validate(doc)


def test_counters_count_across_a_wrap_and_a_reset() -> None:
    assert counter_increase(10, 17, None) == 7
    assert counter_increase(65530, 4, 65536) == 10  # 65530 -> 65535 -> 0 -> 4
    assert counter_increase(900, 4, 65536) == 4  # a fall of less than half: a reset
    assert counter_increase(900, 4, None) == 4


def test_a_counter_with_a_max_wraps_past_it() -> None:
    cat = Catalog.model_validate(yaml.safe_load(CATALOG.replace("LATENESS", "1000").replace(
        '{name: parts, kind: counter, node: "ns=2;s=parts"}',
        '{name: parts, kind: counter, max: 999, node: "ns=2;s=parts"}')))
    roles = PlantRoles(cat)
    assert roles.machines[0].modulus == {Role.PARTS: 1000.0}
    eng = KpiEngine(cat, roles)
    i = roles.ids([f"{M1}/running", f"{M1}/parts", f"{M1}/parts", f"{M1}/parts"])
    ts = np.asarray([D + 7 * H, D + 7 * H, D + 7 * H + M, D + 7 * H + 2 * M], np.int64)
    v = np.asarray([1.0, 990.0, 998.0, 5.0])
    eng.observe("plc", 0, i, ts, v, np.zeros(4, np.int8), np.arange(4, dtype=np.int64),
                D + 7 * H)
    eng.observe("plc", 0, i[:1], ts[-1:] + 10 * S, v[:1], np.zeros(1, np.int8),
                np.arange(4, 5, dtype=np.int64), D + 7 * H)
    oee, _ = eng.summary(0, 0)
    assert oee is not None and oee.parts == 8 + 7  # 990 -> 998 -> 999, 0 .. 5


def test_unsigned_modbus_counters_wrap_at_their_register_size(catalog: Catalog) -> None:
    press = next(m for m in PlantRoles(catalog).machines if m.spec.name == "press-01")
    assert press.modulus == {Role.PARTS: 2.0**32, Role.REJECTS: 2.0**32}  # uint32


def test_energy_splits_a_segment_at_the_shift_end_and_skips_gaps() -> None:
    cal = ShiftCalendar(KpiSpec.model_validate({"shifts": [
        {"name": "a", "start": "06:00", "end": "14:00"},
        {"name": "b", "start": "14:00", "end": "22:00"}]}))
    t0, t1 = D + 14 * H - 30 * S, D + 14 * H + 30 * S
    parts = integrate(t0, 10.0, t1, 20.0, 60_000, cal.between(t0, t1))
    # 10 -> 15 kW over the first 30 s, 15 -> 20 over the next: 12.5 and 17.5 kW average
    assert [(s.name, round(kwh * 3600, 9), gap) for s, kwh, gap in parts] == [
        ("a", 12.5 * 30, 0), ("b", 17.5 * 30, 0)]
    assert [(s.name, kwh, gap) for s, kwh, gap in integrate(
        t0, 10.0, t0 + 61_000, 10.0, 60_000, cal.between(t0, t0 + 61_000))] == [
        ("a", 0.0, 30_000), ("b", 0.0, 31_000)]


def test_power_from_current_is_three_phase_by_default() -> None:
    doc = yaml.safe_load(CATALOG.replace("LATENESS", "1000").replace(
        "energy: {power: power}",
        "energy: {current: power, voltage_v: 400, power_factor: 0.85}"))
    doc["machines"][0]["tags"][4]["unit"] = "A"
    roles = PlantRoles(Catalog.model_validate(doc))
    assert roles.machines[0].power_scale == pytest.approx(math.sqrt(3) * 400 * 0.85 / 1000)
    doc["machines"][0]["energy"]["phases"] = 1
    roles = PlantRoles(Catalog.model_validate(doc))
    assert roles.machines[0].power_scale == pytest.approx(400 * 0.85 / 1000)


def test_a_silent_source_still_ends_its_shift_by_the_clock() -> None:
    cat = day_catalog()
    roles = PlantRoles(cat)
    eng = KpiEngine(cat, roles)
    i = roles.ids([f"{M1}/running", f"{M1}/fault"])
    t = D + 13 * H
    eng.observe("plc", 0, i, np.asarray([t, t], np.int64), np.asarray([1.0, 0.0]),
                np.asarray([Quality.GOOD, Quality.GOOD], np.int8),
                np.arange(2, dtype=np.int64), now_ms=t)
    assert eng.tick(t + 1000) == []  # not silent long enough
    # silent for 2 h of the worker's clock: the watermark follows it, the shift ends
    records = eng.tick(t + 2 * H)
    (early,) = [r for r in records if r.final]
    assert early.shift == "early" and early.run_s == 3600 and early.unknown_s == 7 * 3600 - 1800


def test_the_readme_kpi_example_is_valid_catalog() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("## KPIs: OEE and energy")
    block = re.findall(r"```yaml\n(.*?)```", text[start:text.index("\n## ", start + 1)],
                       re.DOTALL)[0]
    doc = yaml.safe_load(block)
    spec = KpiSpec.model_validate(doc["kpis"])
    assert [s.name for s in spec.shifts] == ["early", "late", "night"]
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas/plant.yaml")
                             .read_text())
    cnc = next(m for m in shipped["machines"] if m["name"] == "cnc-01")
    machines = [{**cnc, **doc["machines"][0]} if m is cnc else m for m in shipped["machines"]]
    cat = Catalog.model_validate({**shipped, "kpis": doc["kpis"], "machines": machines})
    assert cat.machines[0].oee is not None and cat.machines[0].oee.rejects == "reject_count"


def test_a_source_that_moved_to_another_worker_is_not_tallied_on_here() -> None:
    cat = day_catalog()
    roles = PlantRoles(cat)
    eng = KpiEngine(cat, roles)
    i = roles.ids([f"{M1}/running", f"{M1}/fault"])
    t = D + 13 * H
    eng.observe("plc", 0, i, np.asarray([t, t], np.int64), np.asarray([1.0, 0.0]),
                np.zeros(2, np.int8), np.arange(2, dtype=np.int64), now_ms=t)
    assert eng.keep_partitions({0, 2}) == set()  # still ours
    assert eng.keep_partitions({1}) == {0}  # partition 0 went to another worker
    assert eng.tick(t + 2 * H) == [] and eng.summary(0, t) == (None, None)
