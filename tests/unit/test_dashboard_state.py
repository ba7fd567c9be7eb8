"""The dashboard's plant state and message decoding, without Kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest

from millstream.dashboard.messages import Kind, decode
from millstream.dashboard.state import PlantState
from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from schemas.control import AuditRecord
from schemas.events import Anomaly, CommandResult
from schemas.exceptions import ContractError
from tests.support.twin_records import alarm_record, twin_record

CNC = "acme/plant1/machining/line1/cnc-01"


def _twin(catalog: Catalog, temp: float, updated: int, **kw: Any) -> dict[str, Any]:
    doc = twin_record(catalog, "cnc-01", {"spindle_temp": {"value": temp}}, **kw)
    doc["updated"] = updated
    return doc


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_twins_are_coalesced_and_an_older_record_does_not_win(catalog: Catalog) -> None:
    state = PlantState(1000)
    for temp, updated in ((60.0, 100), (61.0, 200), (59.0, 150)):  # the last one is older
        state.apply(Kind.TWIN, CNC, decode(Kind.TWIN, _raw(_twin(catalog, temp, updated))))
    twins, removed = state.take_twins()
    assert [t["tags"]["spindle_temp"]["value"] for t in twins] == [61.0]  # one per machine
    assert removed == [] and state.take_twins() == ([], [])  # handed over once
    state.apply(Kind.TWIN, CNC, decode(Kind.TWIN, None))  # a tombstone
    assert state.take_twins() == ([], [CNC]) and CNC not in state.twins


def test_machine_colour_is_the_highest_active_severity_and_clears(catalog: Catalog) -> None:
    state = PlantState(1000)
    state.apply(Kind.TWIN, CNC, _twin(catalog, 60.0, 1))
    assert state.take_alerts() == {}
    low = alarm_record(CNC, [f"{CNC}/spindle_temp"], "warm", severity="low")
    high = alarm_record(CNC, [f"{CNC}/spindle_speed"], "fast", severity="high")
    for a in (low, high):
        assert state.apply(Kind.ALARM, CNC, decode(Kind.ALARM, _raw(a))) == [("alarm", a)]
    assert state.take_alerts() == {CNC: "high"}
    assert state.take_alerts() == {}  # only changes
    shelved = {**high, "version": 2, "state": "shelved", "active": True}
    state.apply(Kind.ALARM, CNC, shelved)
    assert state.take_alerts() == {CNC: "low"}  # a shelved alarm colours nothing
    assert state.apply(Kind.ALARM, CNC, {**high, "version": 1}) == []  # stale: ignored
    closed = {**low, "version": 3, "state": "closed", "active": False}
    state.apply(Kind.ALARM, CNC, closed)
    assert state.take_alerts() == {CNC: None}
    assert set(state.alarms) == {high["alarm_id"]}  # closed ones leave the list


def test_the_twins_own_alarm_list_colours_a_card_until_a_newer_record_says_otherwise(
        catalog: Catalog) -> None:
    state = PlantState(1000)
    alarm = alarm_record(CNC, [f"{CNC}/spindle_temp"], "hot", severity="critical")
    entry = {k: alarm[k] for k in ("alarm_id", "severity", "state", "message", "started_at",
                                   "tags", "version")}
    state.apply(Kind.TWIN, CNC, _twin(catalog, 99.0, 1, alarms=[entry]))
    assert state.alerts() == {CNC: "critical"}
    state.apply(Kind.ALARM, CNC, {**alarm, "version": 2, "state": "cleared", "active": False})
    assert state.alerts() == {CNC: None}


def test_commands_merge_audit_and_result_into_one_entry() -> None:
    state = PlantState(1000, commands_kept=2)
    sp = f"{CNC}/spindle_speed_sp"
    audit = AuditRecord("a1", "c1", "pending", "checking", "streams", "spindle-overheat",
                        "hot", CNC, sp, 5000.0, 8000.0, None, {"limits": "ok"}, False, 10)
    result = CommandResult("c1", sp, 5000.0, 5000.0, "applied", "wrote 5000", 20)
    state.apply(Kind.AUDIT, None, decode(Kind.AUDIT, audit.encode()))
    [(event, entry)] = state.apply(Kind.RESULT, None, decode(Kind.RESULT, result.encode()))
    assert event == "command"
    assert entry["verdict"] == "applied" and entry["readback"] == 5000.0
    assert entry["rule"] == "spindle-overheat" and entry["checks"] == {"limits": "ok"}
    assert entry["machine"] == CNC and entry["at"] == 20
    for i in range(3):  # the log keeps the newest commands_kept
        state.apply(Kind.RESULT, None, CommandResult(f"n{i}", sp, 1.0, None, "rejected",
                                                     "over the limit", 30 + i).to_dict())
    assert [c["command_id"] for c in state.snapshot()["commands"]] == ["n1", "n2"]


def test_window_results_feed_the_trend_of_the_smallest_size_and_the_newest_per_size() -> None:
    state = PlantState(1000, trend_points=3)
    tag = f"{CNC}/spindle_temp"
    for size, starts in ((1000, [0, 1000, 2000, 3000]), (10_000, [0, 5000])):
        stat = [1.0 * s for s in starts]
        frame = AggregateFrame("opcua-sim", size, [tag] * len(starts), starts,
                               [10] * len(starts), stat, stat, stat, stat, stat, stat,
                               [1.0] * len(starts))
        state.apply(Kind.AGGREGATES, "opcua-sim", decode(Kind.AGGREGATES, frame.encode()))
    detail = state.tag_detail(tag)
    assert [r["window_start"] for r in detail["trend"]] == [1000, 2000, 3000]
    assert [(r["window_ms"], r["window_start"]) for r in detail["windows"]] == [
        (1000, 3000), (10_000, 5000)]
    assert len(state.take_aggregates()[tag]) == 6
    anomaly = Anomaly("x", tag, 2000, 3000, "mean", 90.0, 9.0, 6.0, "sad", 3100)
    state.apply(Kind.ANOMALY, tag, decode(Kind.ANOMALY, anomaly.encode()))
    assert [a["anomaly_id"] for a in state.tag_detail(tag)["anomalies"]] == ["x"]


@pytest.mark.parametrize(("kind", "doc", "why"), [
    (Kind.TWIN, {"schema": "millstream.twin.v2", "machine": "m"}, "wrong-schema"),
    (Kind.TWIN, {"schema": "millstream.twin.v1", "machine": "m", "state": "running",
                 "updated": 1, "tags": {"t": 3}}, "tags.t must be an object"),
    (Kind.TWIN, {"schema": "millstream.twin.v1", "machine": 7, "state": "running",
                 "updated": 1, "tags": {}}, "machine=7 must be str"),
    (Kind.ALARM, {"schema": "millstream.alarms.v1", "alarm_id": "a", "asset": "m",
                  "severity": "high", "state": "active", "started_at": "soon"},
     "started_at='soon' must be int"),
    (Kind.ALARM, {"schema": "millstream.alarms.v1", "alarm_id": "a", "asset": "m",
                  "severity": "high", "state": "active", "started_at": 1, "tags": [1]},
     "array of tag paths"),
    (Kind.AGGREGATES, {"schema": "millstream.other"}, "wrong-schema"),
])
def test_bad_messages_are_refused_with_the_reason(kind: Kind, doc: dict[str, Any],
                                                   why: str) -> None:
    with pytest.raises(ContractError, match=why):
        decode(kind, _raw(doc))


def test_a_message_without_value_is_a_tombstone_only_on_the_twin() -> None:
    assert decode(Kind.TWIN, None) is None
    with pytest.raises(ContractError, match="has no value"):
        decode(Kind.ALARM, None)
    with pytest.raises(ContractError, match="not valid JSON"):
        decode(Kind.TWIN, b"{nope")
