"""AlarmEngine: delay-on, hysteresis and delay-off, ISA-18.2 states, one episode per fault."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from schemas.alarms import Alarm, AlarmAction, AnomalyFeedback
from schemas.catalog import AlarmSpec
from schemas.events import Anomaly
from streams.alarms import AlarmEngine
from streams.detection import AssetEvidence
from streams.exceptions import AlarmActionError

M = "acme/plant1/machining/line1/cnc-01"
TAG = f"{M}/spindle_temp"
T0 = 1_763_760_000_000
NOW = T0 + 10_000_000
SPEC = AlarmSpec(on_windows=3, within_windows=5, off_windows=4, clear_score=0.8)


def anomaly(i: int, score: float, tag: str = TAG, detector: str = "bank:level_shift"
            ) -> Anomaly:
    return Anomaly(f"a{i}", tag, T0 + i * 1000, T0 + (i + 1) * 1000, "mean", 90.0, score,
                   1.0, detector, NOW, "tag", M)


def ev(i: int, score: float, running: bool | None = True, asset: str = M) -> AssetEvidence:
    found = (anomaly(i, score),) if score > 1.0 else ()
    return AssetEvidence(asset, T0 + i * 1000, T0 + (i + 1) * 1000, score, found, running)


def feed(engine: AlarmEngine, scores: list[float], start: int = 0,
         running: bool | None = True) -> list[Alarm]:
    out: list[Alarm] = []
    for k, s in enumerate(scores):
        out += engine.observe(ev(start + k, s, running), NOW + start + k)
    return out


def action(alarm_id: str, kind: str, shelve_s: float | None = None) -> AlarmAction:
    return AlarmAction("x1", alarm_id, M, kind, "alice", "seen", NOW, shelve_s)


def test_delay_on_needs_n_anomalous_windows_within_m() -> None:
    engine = AlarmEngine(SPEC)
    # two anomalous windows, then three quiet ones, then two more: never 3 within 5
    assert feed(engine, [2.0, 2.0, 0.1, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 2.0]) == []
    [raised] = feed(engine, [0.1, 2.0, 2.0], start=10)
    assert (raised.action, raised.state, raised.active, raised.acknowledged) == (
        "raised", "active", True, False)
    assert raised.started_at == T0 + 9_000  # the first anomalous window of the three
    assert raised.tags == [TAG] and raised.version == 1 and raised.ended_at is None
    assert "spindle_temp mean has shifted from its usual level" in raised.message


def test_an_alarm_needs_clearer_evidence_than_an_anomaly() -> None:
    engine = AlarmEngine(SPEC)  # on_score 1.5
    assert feed(engine, [1.4] * 20) == []  # anomalous windows, all of them, but weakly
    assert [r.action for r in feed(engine, [1.6] * 3, start=20)] == ["raised"]


def test_hysteresis_and_delay_off() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [3.0, 3.0, 3.0])
    # between clear_score and 1: not anomalous, but not quiet either: it stays active
    assert feed(engine, [0.9] * 20, start=3) == []
    # three quiet windows, then one between: the delay-off starts again
    assert feed(engine, [0.1, 0.1, 0.1, 0.85], start=23) == []
    assert feed(engine, [0.1, 0.1, 0.1], start=27) == []
    [cleared] = feed(engine, [float("nan")], start=30)  # no score counts as quiet
    assert (cleared.action, cleared.state, cleared.active) == ("cleared", "cleared", False)
    assert cleared.alarm_id == raised.alarm_id and cleared.version == 2
    assert cleared.ended_at == T0 + 3_000  # end of the last anomalous window


def test_a_flickering_fault_is_one_episode_and_the_next_fault_another() -> None:
    engine = AlarmEngine(SPEC)
    fault = [2.0, 2.0, 0.3, 2.0, 0.2, 0.3, 2.0, 2.0, 0.1, 0.1, 2.0] * 3
    records = feed(engine, fault + [0.1] * 4)
    assert [r.action for r in records] == ["raised", "cleared"]
    later = feed(engine, [2.0] * 3 + [0.1] * 4, start=100)
    assert [r.action for r in later] == ["raised", "cleared"]
    assert later[0].alarm_id != records[0].alarm_id
    assert engine.raised == 2


def test_ack_while_active_then_clear_closes_it() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3)
    [acked] = engine.act(action(raised.alarm_id, "ack"), NOW + 5)
    assert (acked.state, acked.acknowledged, acked.actor, acked.note, acked.version) == (
        "acknowledged", True, "alice", "seen", 2)
    [closed] = feed(engine, [0.1] * 4, start=3)
    assert (closed.action, closed.state, closed.active) == ("closed", "closed", False)


def test_cleared_unacknowledged_needs_an_ack_to_close() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3)
    [cleared] = feed(engine, [0.1] * 4, start=3)
    assert cleared.state == "cleared"
    [closed] = engine.act(action(raised.alarm_id, "ack"), NOW + 9)
    assert (closed.state, closed.action, closed.actor) == ("closed", "acknowledged", "alice")
    with pytest.raises(AlarmActionError, match="closed"):
        engine.act(action(raised.alarm_id, "shelve", 60), NOW + 10)


def test_shelve_expires_or_is_lifted() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3)
    [shelved] = engine.act(action(raised.alarm_id, "shelve", 30), NOW)
    assert shelved.state == "shelved" and shelved.shelved_until == NOW + 30_000
    assert feed(engine, [2.0] * 5, start=3) == []  # still active, silently
    assert engine.tick(NOW + 29_999) == []
    [back] = engine.tick(NOW + 30_000)
    assert (back.state, back.action, back.actor, back.shelved_until) == (
        "active", "unshelved", "streams", None)
    engine.act(action(raised.alarm_id, "shelve", 1e9), NOW)  # capped at shelve_max_s
    [unshelved] = engine.act(action(raised.alarm_id, "unshelve"), NOW + 1)
    assert unshelved.state == "active" and unshelved.actor == "alice"
    with pytest.raises(AlarmActionError, match="not shelved"):
        engine.act(action(raised.alarm_id, "unshelve"), NOW + 2)


def test_cleared_while_shelved_needs_no_ack() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3)
    engine.act(action(raised.alarm_id, "shelve", 600), NOW)
    [closed] = feed(engine, [0.1] * 4, start=3)
    assert closed.state == "closed" and closed.shelved_until is None


def test_a_stopped_machine_is_suppressed() -> None:
    engine = AlarmEngine(SPEC)
    assert feed(engine, [5.0] * 6, running=False) == []  # never opens while stopped
    [raised] = feed(engine, [2.0] * 3, start=6)
    [suppressed] = engine.observe(ev(9, 0.1, running=False), NOW)
    assert (suppressed.state, suppressed.action) == ("suppressed", "suppressed")
    [closed] = feed(engine, [0.1] * 3, start=10, running=False)
    assert closed.alarm_id == raised.alarm_id and closed.state == "closed"  # no ack needed


def test_unknown_machine_state_is_not_suppressed() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3, running=None)
    assert raised.state == "active"


def test_severity_escalates_with_the_peak_score() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [1.6] * 3)
    assert raised.severity == "low"
    [up] = feed(engine, [30.0], start=3)
    assert (up.action, up.severity, up.score) == ("escalated", "critical", 30.0)


def test_false_positive_closes_it_and_names_the_thresholds_to_raise() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0, 4.0, 3.0])
    fb = AnomalyFeedback("f1", raised.alarm_id, M, "false-positive", "bob", "", NOW)
    [closed], raises = engine.false_positive(fb, NOW + 1)
    assert (closed.state, closed.action, closed.actor, closed.active) == (
        "closed", "false-positive", "bob", False)
    assert raises == [("bank", TAG, pytest.approx(4.0 * SPEC.feedback_margin))]
    assert engine.open_count == 0
    with pytest.raises(AlarmActionError, match="already"):
        engine.false_positive(fb, NOW + 2)
    with pytest.raises(AlarmActionError, match="not known"):
        engine.act(action("nope", "ack"), NOW)


def test_snapshot_and_restore_continue_the_same_episode() -> None:
    engine = AlarmEngine(SPEC)
    [raised] = feed(engine, [2.0] * 3)
    feed(engine, [0.1, 0.1], start=3)  # half-way through the delay-off
    snap = json.loads(json.dumps(engine.snapshot()))
    twin = AlarmEngine(SPEC)
    twin.restore(snap)
    a = feed(engine, [0.1, 0.1], start=5)
    b = feed(twin, [0.1, 0.1], start=5)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    assert b[0].alarm_id == raised.alarm_id and b[0].version == 2
    assert twin.snapshot(assets=["other"])["points"] == {}


def test_records_match_the_json_schema_and_round_trip() -> None:
    engine = AlarmEngine(SPEC)
    records = feed(engine, [2.0] * 3 + [0.1] * 4)
    text = resources.files("schemas").joinpath("jsonschema/millstream.alarms.json").read_text()
    for r in records:
        jsonschema.validate(json.loads(r.encode()), json.loads(text))
        assert Alarm.decode(r.encode()) == r


def _schema(topic: str) -> dict[str, object]:
    text = resources.files("schemas").joinpath(f"jsonschema/millstream.{topic}.json").read_text()
    doc: dict[str, object] = json.loads(text)
    return doc


def test_operator_messages_and_rich_anomalies_match_their_json_schemas() -> None:
    from schemas.exceptions import ContractError

    shelve = action("al-1", "shelve", 600)
    fb = AnomalyFeedback("f1", "al-1", M, "false-positive", "bob", "", NOW)
    machine = Anomaly("a1", M, T0, T0 + 1000, "spindle_temp:mean", 91.0, 3.5, 1.0, "pca", NOW,
                      "asset", M, [TAG, f"{M}/coolant_temp"],
                      [("spindle_temp:mean", 0.8), ("coolant_temp:mean", 0.2)])
    for event, topic in ((shelve, "alarm-actions"), (fb, "anomaly-feedback"),
                         (machine, "anomalies"), (anomaly(1, 2.0), "anomalies")):
        jsonschema.validate(json.loads(event.encode()), _schema(topic))
        assert type(event).decode(event.encode()) == event
    old = json.loads(anomaly(1, 2.0).encode())
    for key in ("scope", "asset", "tags", "drivers"):
        del old[key]
    jsonschema.validate(old, _schema("anomalies"))  # written before these fields existed
    assert Anomaly.from_dict(old).tags == [TAG] and Anomaly.from_dict(old).scope == "tag"
    with pytest.raises(ContractError, match="shelve_s"):
        AlarmAction("x", "al-1", M, "shelve", "alice", "", NOW)
    with pytest.raises(ContractError, match="action"):
        AlarmAction("x", "al-1", M, "delete", "alice", "", NOW)
    with pytest.raises(ContractError, match="drivers"):
        Anomaly.from_dict({**old, "drivers": [["x", "high"]]})
