"""SpcEngine on the shipped plant's characteristics: baseline, violations as records,
capability per shift, what is not charted, and state that survives a snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import jsonschema
import pytest

from schemas.spc_events import SpcCapability, SpcViolation, decode_spc
from streams.spc import ChartOutput, SpcEngine
from tests.support.spc import spc_catalog

CNC = "acme/plant1/machining/line1/cnc-01/cycle_time"
PRESS = "acme/plant1/forming/line2/press-01/cycle_time"
# 2026-11-23 13:00 UTC: the "late" shift (14:00-22:00) starts an hour later
T0 = int(datetime(2026, 11, 23, 13, 0, tzinfo=UTC).timestamp() * 1000)
LATE = int(datetime(2026, 11, 23, 14, 0, tzinfo=UTC).timestamp() * 1000)
NOW = T0 + 10**7


def feed(engine: SpcEngine, tag: str, values: list[float], start: int,
         step: int = 100) -> ChartOutput:
    n = len(values)
    return engine.observe([tag] * n, [start + i * step for i in range(n)], values, [0] * n, NOW)


def baseline() -> list[float]:
    # 50 values 35.8, 36.2, ...: mean 36.0, every moving range 0.4, sigma 0.4 / 1.128
    return [35.8, 36.2] * 25


def test_limits_freeze_after_the_baseline_and_a_jump_is_named() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    assert feed(e, CNC, baseline(), T0).violations == []
    lim = e.charts[CNC].limits
    assert lim is not None and lim.points == 50
    sigma = 0.4 / 1.128
    assert lim.centre == pytest.approx(36.0) and lim.ucl == pytest.approx(36.0 + 3 * sigma)
    out = feed(e, CNC, [57.6], T0 + 50 * 100)
    assert [(v.rule, v.ts) for v in out.violations] == [("western_electric-1", T0 + 5000),
                                                        ("nelson-1", T0 + 5000),
                                                        ("range-1", T0 + 5000)]
    mr = out.violations[2]  # the jump is also a moving range far above D4 x MRbar
    assert (mr.rule_set, mr.statistic, mr.chart) == ("range", "moving_range", "individuals")
    assert mr.value == pytest.approx(57.6 - baseline()[-1])
    assert mr.ucl == pytest.approx(3.267 * 0.4) and mr.centre == pytest.approx(0.4)
    assert mr.message.startswith("range-1: 1 point above the moving range chart's UCL")
    back = feed(e, CNC, [57.7, 36.0, 36.1], T0 + 5100)  # MR 0.1 then 21.7: fires again
    assert [v.rule for v in back.violations if v.rule == "range-1"] == ["range-1"]
    v = out.violations[0]
    assert v.tag == CNC and v.value == 57.6 and v.points == 1 and v.first_ts == v.ts
    assert (v.centre, v.ucl, v.lcl) == (lim.centre, lim.ucl, lim.lcl)
    assert v.message.startswith(f"western_electric-1: 1 point beyond 3 sigma on {CNC} "
                                "(individuals chart): value 57.6 at")
    assert "UCL 37.06" in v.message


def test_the_range_rule_runs_only_where_the_catalog_lists_it() -> None:
    from schemas.catalog import Catalog
    from tests.support.spc import spc_doc
    doc = spc_doc()
    doc["spc"]["characteristics"][0]["rules"] = ["western_electric"]
    e = SpcEngine(Catalog.model_validate(doc))
    feed(e, CNC, baseline(), T0)
    out = feed(e, CNC, [57.6], T0 + 50 * 100)
    assert [v.rule for v in out.violations] == ["western_electric-1"]


def test_a_slow_drift_trips_the_trend_and_run_rules() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    feed(e, CNC, baseline(), T0)
    out = feed(e, CNC, [36.05 + 0.03 * i for i in range(9)], T0 + 5000)
    got = {v.rule: v for v in out.violations}
    assert {"nelson-3", "western_electric-4", "nelson-2"} <= set(got)
    assert got["nelson-3"].points == 6
    assert got["nelson-3"].first_ts == T0 + 5000  # the pattern's first point
    assert "nelson-3: 6 points in a row steadily increasing or decreasing" in \
        got["nelson-3"].message


def test_only_good_new_readings_of_charted_tags_count() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    out = e.observe([CNC, CNC, CNC, "acme/plant1/machining/line1/cnc-01/spindle_temp", CNC],
                    [T0, T0 + 1, T0 + 2, T0 + 3, T0],
                    [36.0, None, float("nan"), 99.0, 36.1], [0, 2, 0, 0, 0], NOW)
    assert out == ChartOutput()
    c = e.counters()
    assert (c["points"], c["not_good"], c["skipped"]) == (2, 2, 1)


def test_subgroups_of_five_consecutive_readings() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    values = [6.0, 6.1, 5.9, 6.05, 5.95] * 25  # 25 subgroups, mean 6.0, range 0.2 each
    feed(e, PRESS, values, T0, step=200)
    lim = e.charts[PRESS].limits
    assert lim is not None and lim.points == 25 and lim.n == 5
    assert lim.centre == pytest.approx(6.0)
    assert lim.ucl == pytest.approx(6.0 + 0.577 * 0.2)
    out = feed(e, PRESS, [6.3, 6.4, 6.35, 6.3, 6.4, 6.1], T0 + 25 * 5 * 200, step=200)
    assert [(v.rule, v.statistic) for v in out.violations] == [
        ("western_electric-1", "subgroup_mean")]
    assert out.violations[0].value == pytest.approx(6.35)
    assert e.charts[PRESS].group == [6.1]  # the next subgroup is being filled


def test_capability_per_shift_when_the_next_shift_starts() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    assert feed(e, CNC, baseline(), T0).capabilities == []
    out = feed(e, CNC, [36.0], LATE)
    [cap] = out.capabilities
    assert (cap.shift, cap.complete, cap.points, cap.tag) == ("early", True, 50, CNC)
    assert cap.shift_end == LATE
    assert cap.shift_start == LATE - 8 * 3600 * 1000
    assert cap.sigma_within == pytest.approx(0.4 / 1.128)
    # USL 38 only: one-sided, (38 - 36) / (3 * sigma)
    assert cap.cp is None and cap.cpu == cap.cpk == pytest.approx(2.0 / (3 * 0.4 / 1.128))
    assert "only USL" in cap.note
    # a reading of the closed shift arriving late is charted but not re-tallied
    late = e.observe([CNC], [LATE - 1], [36.0], [0], NOW)
    assert late.capabilities == [] and e.charts[CNC].skipped == 1


def test_a_quiet_shift_is_closed_by_the_clock_and_too_few_points_say_so() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog, grace_ms=60_000)
    feed(e, CNC, [36.0, 36.1, 35.9], T0)
    assert e.tick(LATE + 59_000).capabilities == []
    [cap] = e.tick(LATE + 60_000).capabilities
    assert cap.points == 3 and cap.cpk is None
    assert cap.note == "too few points: 3 in the shift, Cp/Cpk need at least 30"
    assert e.tick(LATE + 120_000).capabilities == []


def test_flush_sends_the_open_shift_as_incomplete() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    feed(e, CNC, baseline(), T0)
    [cap] = e.flush(NOW).capabilities
    assert cap.complete is False and cap.points == 50
    [again] = feed(e, CNC, [36.0], LATE).capabilities  # it stayed open
    assert again.complete is True and again.points == 50


def test_snapshot_restore_continues_as_if_uninterrupted() -> None:
    catalog = spc_catalog()
    whole, first = SpcEngine(catalog), SpcEngine(catalog)
    head, tail = [*baseline(), 36.1, 36.3], [36.5, 36.7, 36.9, 37.2, 38.0]
    for e in (whole, first):
        feed(e, CNC, head, T0)
    snap = json.loads(json.dumps(first.snapshot()))
    second = SpcEngine(catalog)
    second.restore(snap)
    start = T0 + len(head) * 100
    assert feed(second, CNC, tail, start) == feed(whole, CNC, tail, start)
    assert second.snapshot() == whole.snapshot()


def test_rebase_learns_new_limits() -> None:
    catalog = spc_catalog()
    e = SpcEngine(catalog)
    feed(e, CNC, baseline(), T0)
    e.rebase(CNC)
    assert e.charts[CNC].limits is None
    feed(e, CNC, [57.4, 57.8] * 25, T0 + 10_000)
    lim = e.charts[CNC].limits
    assert lim is not None and lim.centre == pytest.approx(57.6)


def test_records_match_the_topic_schema() -> None:
    catalog = spc_catalog()
    schema = json.loads(resources.files("schemas").joinpath(
        "jsonschema/millstream.spc.json").read_text())
    e = SpcEngine(catalog)
    feed(e, CNC, baseline(), T0)
    out = feed(e, CNC, [57.6, 36.0], LATE - 200)
    out.extend(feed(e, CNC, [36.0], LATE + 100))
    records: list[SpcViolation | SpcCapability] = [*out.violations, *out.capabilities]
    assert {type(r) for r in records} == {SpcViolation, SpcCapability}
    for r in records:
        doc = json.loads(r.encode())
        jsonschema.validate(doc, schema)
        assert decode_spc(r.encode()) == r
