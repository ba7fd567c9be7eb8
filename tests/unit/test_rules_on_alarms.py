"""``sustained_anomaly`` rules that fire on alarm episodes instead of anomalous windows."""

from __future__ import annotations

from schemas.alarms import Alarm
from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly
from streams.rules import RuleEngine

PRESS = "acme/plant1/forming/line2/press-01"
PRESSURE = f"{PRESS}/hydraulic_pressure"
T0 = 1_763_726_401_000


def _on_alarms(catalog: Catalog) -> Catalog:
    rules = [r.model_copy(update={"on": "alarms"}) if r.kind == "sustained_anomaly" else r
             for r in catalog.rules]
    return catalog.model_copy(update={"rules": rules})


def _alarm(action: str, tags: list[str], alarm_id: str = "al-1") -> Alarm:
    return Alarm(alarm_id, PRESS, tags, "high", "active", "press-01: pressure low", T0, None,
                 T0 + 5000, 1, True, False, action, "streams", "", 4.0, ["bank:level_shift"])


def test_a_raised_alarm_naming_the_tag_fires_the_rule(catalog: Catalog) -> None:
    eng = RuleEngine(_on_alarms(catalog))
    assert eng.on_alarms([_alarm("raised", [f"{PRESS}/oil_temp"])], 1000) == []
    [cmd] = eng.on_alarms([_alarm("raised", [f"{PRESS}/oil_temp", PRESSURE])], 2000)
    assert cmd.rule == "press-pressure-anomaly" and cmd.setpoint == f"{PRESS}/pressure_sp"
    assert cmd.reason.startswith("alarm al-1 (high): press-01: pressure low")
    # later changes of the episode fire nothing; a new episode within the cooldown neither
    assert eng.on_alarms([_alarm("escalated", [PRESSURE])], 3000) == []
    assert eng.on_alarms([_alarm("raised", [PRESSURE], "al-2")], 4000) == []
    assert len(eng.on_alarms([_alarm("raised", [PRESSURE], "al-3")], 40_000)) == 1


def test_anomalous_windows_alone_do_not_fire_an_alarm_rule(catalog: Catalog) -> None:
    eng = RuleEngine(_on_alarms(catalog))
    for i in range(10):
        agg = Aggregate(PRESSURE, T0 + i * 1000, T0 + (i + 1) * 1000, 5, 100, 120, 110, 1,
                        100, 120)
        found = [Anomaly("a", PRESSURE, agg.window_start, agg.window_end, "mean", 110, 9,
                         1, "bank:level_shift", 0)]
        assert eng.evaluate(agg, found, i * 1000) == []
    default = RuleEngine(catalog)  # on: anomalies, as before
    fired = [default.evaluate(Aggregate(PRESSURE, T0 + i * 1000, T0 + (i + 1) * 1000, 5, 100,
                                        120, 110, 1, 100, 120),
                              [Anomaly("a", PRESSURE, T0 + i * 1000, T0 + (i + 1) * 1000,
                                       "mean", 110, 9, 1, "bank:level_shift", 0)], i * 1000)
             for i in range(3)]
    assert [len(f) for f in fired] == [0, 0, 1]
