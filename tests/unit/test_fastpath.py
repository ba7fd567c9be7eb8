"""The fast path: limit rules on every reading, with hysteresis, cooldown and ordering."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from schemas.catalog import Catalog, RuleSpec
from schemas.exceptions import CatalogError
from schemas.readings import FrameBuilder, Quality
from streams.fastpath import FastPath, default_hysteresis
from streams.processor import FrameProcessor

CNC = "acme/plant1/machining/line1/cnc-01"
TEMP = f"{CNC}/spindle_temp"  # range 20..85: default hysteresis 1.3 degC
COOLANT = f"{CNC}/coolant_temp"
T0 = 1_763_760_000_000
NOW = T0 + 60_000


def _with_rules(catalog: Catalog, *rules: dict[str, Any]) -> Catalog:
    doc = catalog.model_dump(by_alias=True, exclude_none=True)
    doc["rules"] = [{"kind": "limit", "tag": "cnc-01/spindle_temp",
                     "action": {"setpoint": "cnc-01/spindle_speed_sp", "value": 5000}, **r}
                    for r in rules]
    return Catalog.model_validate(doc)


def _fast(catalog: Catalog, **rule: Any) -> FastPath:
    cat = _with_rules(catalog, {"name": "hot", "above": 85, "cooldown_s": 0, **rule})
    return FastPath(cat, cat.rules)


class Feed:
    """Readings of one tag into a FastPath, a frame at a time, ts 10 ms apart."""

    def __init__(self, fast: FastPath, tag: str = TEMP) -> None:
        self.fast, self.tag, self.ts = fast, tag, T0

    def __call__(self, *values: float, now: int = NOW, quality: int = 0) -> list[str]:
        n = len(values)
        ts = self.ts + 10 * np.arange(n, dtype=np.int64)
        self.ts += 10 * n
        cmds = self.fast.evaluate([self.tag] * n, ts, np.asarray(values, np.float64),
                                  np.full(n, quality, np.int8), None, now)
        return [c.reason for c in cmds]


def test_one_excursion_gives_one_command_however_it_is_framed(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog))
    assert feed(80, 84.9, 85.0) == []  # at the bound is not beyond it
    [reason] = feed(84, 86.5, 90, 95)
    assert reason.startswith("spindle_temp 86.5 degC > 85 at ")
    assert reason.endswith("(re-arms below 83.7)")
    assert feed(97, 99) == [] and feed(92) == []  # still the same excursion
    assert feed.fast.counters() == {"fired": 1, "suppressed": 0, "stale": 0}


def test_oscillation_inside_the_hysteresis_band_gives_one_command(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog))
    wobble = [85.4, 84.2, 85.2, 83.8, 85.9, 84.0, 86.0]  # never back below 85 - 1.3
    fired = feed(*wobble) + feed(*wobble) + feed(*reversed(wobble))
    assert len(fired) == 1


def test_rearms_after_recovery_and_fires_again(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog))
    assert len(feed(86, 84)) == 1  # 84 is inside the band: not re-armed
    assert feed(86) == []
    assert feed(83.6) == []  # back below 83.7: re-armed
    assert len(feed(85.5)) == 1
    # two full excursions inside one frame: two commands (no cooldown)
    assert len(feed(70, 90, 70, 90, 70)) == 2
    assert feed.fast.counters()["fired"] == 4


def test_hysteresis_is_configurable_per_rule(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog, hysteresis=10))
    assert len(feed(86, 76, 86)) == 1  # 76 is not below 75
    assert len(feed(74.9, 86)) == 1


def test_cooldown_suppresses_and_leaves_the_rule_armed(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog, cooldown_s=30))
    assert len(feed(90, now=NOW)) == 1
    assert feed(70, 90, now=NOW + 10_000) == []  # a new excursion inside the cooldown
    assert feed.fast.counters()["suppressed"] == 1
    # the breach outlasts the cooldown: it gets its command then, once
    assert len(feed(91, 92, now=NOW + 30_000)) == 1
    assert feed(70, 90, now=NOW + 40_000) == []  # cooling since NOW + 30 s
    assert feed.fast.counters() == {"fired": 2, "suppressed": 2, "stale": 0}
    assert len(feed(93, now=NOW + 61_000)) == 1  # ... and that breach outlasted it too
    assert feed(94, now=NOW + 95_000) == []  # same excursion, cooldown over: no repeat
    assert len(feed(70, 90, now=NOW + 95_000)) == 1


def test_a_breach_that_holds_still_fires_at_the_tick_after_the_cooldown(
        catalog: Catalog) -> None:
    """A subscription reports changes only: a value stuck above the bound sends no new
    reading, so the timer fires the breach the cooldown held."""
    feed = Feed(_fast(catalog, cooldown_s=30))
    assert len(feed(90, now=NOW)) == 1
    assert feed(70, 95, now=NOW + 1000) == []  # held by the cooldown
    assert feed.fast.tick(NOW + 29_999) == []
    [cmd] = feed.fast.tick(NOW + 30_000)
    assert cmd.reason.startswith("spindle_temp 95 degC > 85") and cmd.issued_at == NOW + 30_000
    assert feed.fast.tick(NOW + 90_000) == []  # once
    # held, then back inside the band: nothing to fire any more
    assert feed(70, 96, now=NOW + 31_000) == [] and feed(84, now=NOW + 31_000) == []
    assert feed.fast.tick(NOW + 90_000) == []


def test_below_limits_and_both_bounds(catalog: Catalog) -> None:
    feed = Feed(_fast(catalog, above=None, below=30, hysteresis=2))
    assert feed(35, 31) == [] and len(feed(29.5)) == 1
    assert feed(31, 29) == [] and len(feed(32, 29)) == 1
    both = Feed(_fast(catalog, above=85, below=30, hysteresis=1))
    assert len(both(50, 86)) == 1 and both(29) == []  # 86 -> 29: no reading back inside
    assert len(both(50, 29)) == 1


def test_out_of_order_and_bad_readings_do_not_fire(catalog: Catalog) -> None:
    fast = _fast(catalog)

    def ev(ts: list[int], values: list[float], quality: int = 0) -> int:
        n = len(ts)
        return len(fast.evaluate([TEMP] * n, np.asarray(ts, np.int64),
                                 np.asarray(values, np.float64), np.full(n, quality, np.int8),
                                 None, NOW))

    assert ev([T0 + 100], [70.0]) == 0
    assert ev([T0 + 50, T0 + 60], [95.0, 96.0]) == 0  # older than the newest reading
    assert ev([T0 + 200, T0 + 150], [70.0, 99.0]) == 0  # out of order inside a frame
    assert fast.counters()["stale"] == 3
    assert ev([T0 + 300], [99.0], quality=Quality.BAD) == 0
    assert ev([T0 + 310], [float("nan")]) == 0
    assert ev([T0 + 320], [99.0], quality=Quality.UNCERTAIN) == 1
    assert ev([T0 + 320, T0 + 330], [70.0, 99.0]) == 1  # equal ts is not out of order


def test_only_rule_tags_count_and_other_sources_are_not_looked_at(catalog: Catalog) -> None:
    fast = _fast(catalog)
    assert fast.watches("opcua-sim") and not fast.watches("modbus-sim")
    n = 10_000
    tags = [COOLANT] * n
    tags[7777] = TEMP
    values = np.full(n, 500.0)
    values[7777] = 50.0
    ts = T0 + np.arange(n, dtype=np.int64)
    assert fast.evaluate(tags, ts, values, np.zeros(n, np.int8), None, NOW) == []
    values[7777] = 90.0
    ts += n
    [cmd] = fast.evaluate(tags, ts, values, np.zeros(n, np.int8), None, NOW)
    assert cmd.reason.startswith("spindle_temp 90 degC")


def test_state_survives_snapshot_and_restore(catalog: Catalog) -> None:
    fast = _fast(catalog, cooldown_s=30)
    Feed(fast)(90)  # fired, disarmed, cooling
    snap = fast.snapshot()
    again = _fast(catalog, cooldown_s=30)
    again.restore(snap)
    feed = Feed(again)
    feed.ts = T0 + 1000
    assert feed(95, now=NOW + 40_000) == []  # still the same excursion: disarmed
    assert again.snapshot()["hot"]["last_ts"] == T0 + 1000


def test_default_hysteresis() -> None:
    from schemas.catalog import TagSpec

    def rule(**kw: Any) -> RuleSpec:
        return RuleSpec.model_validate({"name": "r", "kind": "limit", "tag": "m/t",
                                        "action": {"setpoint": "m/s", "value": 1}, **kw})

    ranged = TagSpec(name="t", low=20, high=120)
    assert default_hysteresis(rule(above=100), ranged) == pytest.approx(2.0)
    assert default_hysteresis(rule(above=100, hysteresis=0.5), ranged) == 0.5
    assert default_hysteresis(rule(below=-40), TagSpec(name="t")) == pytest.approx(0.4)


def test_which_limits_a_single_reading_decides() -> None:
    def spec(**kw: Any) -> RuleSpec:
        return RuleSpec.model_validate({"name": "r", "kind": "limit", "tag": "m/t",
                                        "action": {"setpoint": "m/s", "value": 1}, **kw})

    assert spec(above=1).per_reading and spec(statistic="value", below=1).per_reading
    assert spec(statistic="min", below=1).per_reading
    assert not spec(statistic="mean", above=1).per_reading
    assert not spec(statistic="max", below=1).per_reading  # every reading below: a window
    assert not spec(statistic="min", above=1).per_reading
    with pytest.raises(ValueError, match=r"below .* must be less than above"):
        spec(above=1, below=2)


def test_catalog_refuses_a_negative_hysteresis(catalog: Catalog) -> None:
    with pytest.raises((ValueError, CatalogError)):
        _with_rules(catalog, {"name": "hot", "above": 85, "hysteresis": -1})


def _frame(rows: list[tuple[str, int, float]], seq: int) -> bytes:
    fb = FrameBuilder("opcua-sim", epoch=1, next_seq=seq)
    for tag, ts, v in rows:
        fb.add(tag, ts, v)
    frame = fb.flush()
    assert frame is not None
    return frame.encode()


def test_processor_fires_on_the_reading_and_never_on_late_or_repeated_frames(
        catalog: Catalog) -> None:
    cat = _with_rules(catalog, {"name": "hot", "above": 85, "cooldown_s": 0},
                      {"name": "hot-mean", "above": 85, "statistic": "mean",
                       "cooldown_s": 0})
    proc = FrameProcessor(cat)
    first = _frame([(TEMP, T0, 70.0), (TEMP, T0 + 10, 90.0)], seq=1)
    [cmd] = proc.process(None, first, "t", 0, 0, NOW).commands
    assert cmd.rule == "hot"
    assert proc.process(None, first, "t", 0, 1, NOW).commands == []  # redelivered frame
    # moves the watermark 5 s on: the 1 s window of T0 closes (its mean 80 is no breach)
    out = proc.process(None, _frame([(TEMP, T0 + 5000, 70.0)], seq=3), "t", 0, 2, NOW)
    assert out.commands == [] and len(out.aggregates) == 1
    # a reading of that closed window, beyond the bound: late, routed, never fired on
    late = proc.process(None, _frame([(TEMP, T0 + 20, 99.0)], seq=4), "t", 0, 3, NOW)
    assert late.commands == [] and len(late.late) == 1
    # a window whose mean is beyond the bound: the window rule fires, the reading rule too
    out = proc.process(None, _frame([(TEMP, T0 + 6000 + i, 95.0) for i in range(3)], seq=5),
                       "t", 0, 4, NOW)
    assert [c.rule for c in out.commands] == ["hot"]
    out = proc.process(None, _frame([(TEMP, T0 + 9000, 70.0)], seq=8), "t", 0, 5, NOW)
    assert [c.rule for c in out.commands] == ["hot-mean"]
    assert proc.counters()["commands"] == 3
