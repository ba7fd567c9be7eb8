"""Rules: limit, sustained anomaly, cooldown, and the commands they issue."""

from __future__ import annotations

from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, Command
from streams.rules import COMMAND_TTL_MS, RuleEngine

CNC = "acme/plant1/machining/line1/cnc-01"
PRESS = "acme/plant1/forming/line2/press-01"
T0 = 1_763_726_401_000  # 12:00:01 UTC


def _agg(tag: str, i: int, mx: float = 70.0) -> Aggregate:
    return Aggregate(tag=tag, window_start=T0 + i * 1000, window_end=T0 + (i + 1) * 1000,
                     count=5, min=mx - 5, max=mx, mean=mx - 2, std=1.0, first=mx, last=mx)


def _anomaly(agg: Aggregate) -> Anomaly:
    return Anomaly(anomaly_id="a" * 32, tag=agg.tag, window_start=agg.window_start,
                   window_end=agg.window_end, feature="mean", value=245.1, score=8.2,
                   threshold=6.0, detector="d", detected_at=0)


def test_limit_rule_issues_a_command(catalog: Catalog) -> None:
    eng = RuleEngine(catalog)
    assert eng.evaluate(_agg(f"{CNC}/spindle_temp", 0, 84.9), [], now_ms=1000) == []
    [cmd] = eng.evaluate(_agg(f"{CNC}/spindle_temp", 1, 91.2), [], now_ms=5000)
    assert cmd.rule == "spindle-overheat"
    assert cmd.machine == CNC and cmd.setpoint == f"{CNC}/spindle_speed_sp"
    assert cmd.value == 5000.0
    assert cmd.reason == "max spindle_temp 91.2 degC > 85 in window 12:00:02"
    assert (cmd.issued_at, cmd.expires_at) == (5000, 5000 + COMMAND_TTL_MS)
    assert len(cmd.command_id) == 32
    assert Command.decode(cmd.encode()) == cmd


def test_cooldown_by_processing_time(catalog: Catalog) -> None:
    eng = RuleEngine(catalog)
    tag = f"{CNC}/spindle_temp"
    assert len(eng.evaluate(_agg(tag, 0, 99), [], now_ms=0)) == 1
    assert eng.evaluate(_agg(tag, 1, 99), [], now_ms=29_999) == []
    assert eng.suppressed == 1
    assert len(eng.evaluate(_agg(tag, 2, 99), [], now_ms=30_000)) == 1
    assert eng.fired == 2


def test_other_tags_do_not_trigger(catalog: Catalog) -> None:
    eng = RuleEngine(catalog)
    assert eng.evaluate(_agg(f"{CNC}/coolant_temp", 0, 500), [], 0) == []


def test_sustained_anomaly_needs_consecutive_windows(catalog: Catalog) -> None:
    eng = RuleEngine(catalog)
    tag = f"{PRESS}/hydraulic_pressure"

    def step(i: int, anomalous: bool, now: int = 0) -> list[Command]:
        a = _agg(tag, i, 200)
        return eng.evaluate(a, [_anomaly(a)] if anomalous else [], now)

    assert step(0, True) == [] and step(1, True) == []
    assert step(2, False) == []  # resets the run
    assert step(3, True) == [] and step(4, True) == []
    assert step(6, True) == []  # window 5 missing: a gap resets too
    assert step(7, True) == []
    [cmd] = step(8, True, now=1234)
    assert cmd.rule == "press-pressure-anomaly" and cmd.setpoint == f"{PRESS}/pressure_sp"
    assert cmd.machine == PRESS and cmd.value == 160.0
    assert "3 consecutive anomalous windows of hydraulic_pressure" in cmd.reason
    assert "mean 245.1 bar scored 8.2 > 6" in cmd.reason
    assert step(9, True, now=2000) == []  # cooldown
