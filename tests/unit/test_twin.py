"""The digital twin without a broker: last readings, state, rate, merge, relay, contract."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest

from schemas.catalog import Catalog
from schemas.events import CommandResult
from schemas.exceptions import ContractError
from schemas.readings import FrameBuilder, Quality
from schemas.topics import Topics
from schemas.twin import TwinRecord
from sinks.rows import TWIN_COLUMNS, twin_columns
from streams.processor import FrameProcessor
from streams.roles import PlantRoles
from streams.twin import TwinState
from streams.twin_inputs import Relay, TwinInput
from streams.twin_merge import TwinMerger

CNC = "acme/plant1/machining/line1/cnc-01"
T0 = 1_763_760_000_000


def schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        resources.files("schemas").joinpath(f"jsonschema/{name}.json").read_text())
    return doc


def observe(twin: TwinState, roles: PlantRoles, rows: list[tuple[str, int, float | None]],
            quality: int = Quality.GOOD) -> None:
    ids = roles.ids([f"{CNC}/{t}" for t, _, _ in rows])
    twin.observe(ids, np.asarray([r[1] for r in rows], np.int64),
                 np.asarray([np.nan if r[2] is None else r[2] for r in rows]),
                 np.full(len(rows), quality, np.int8), np.arange(len(rows), dtype=np.int64))


def no_kpis(machine: int, now: int) -> tuple[None, None]:
    return None, None


def test_each_tag_keeps_its_newest_reading_and_the_state_follows(catalog: Catalog) -> None:
    roles = PlantRoles(catalog)
    twin = TwinState(catalog, roles)
    observe(twin, roles, [("spindle_temp", T0 + 200, 61.0), ("spindle_temp", T0 + 900, 63.0),
                          ("spindle_temp", T0 + 500, 62.0), ("running", T0, 1.0),
                          ("fault", T0, 0.0)])
    observe(twin, roles, [("spindle_temp", T0 + 300, 99.0)])  # an older frame: ignored
    (part,) = twin.due(T0 + 1000, no_kpis)
    assert part.kind == "part" and part.machine == CNC
    body = part.body
    temp = body["tags"]["spindle_temp"]
    assert (temp["value"], temp["ts"], temp["unit"], temp["low"], temp["high"],
            temp["quality"]) == (63.0, T0 + 900, "degC", 20, 85, "GOOD")
    assert (body["state"], body["state_since"]) == ("running", T0)
    assert "vibration_rms" not in body["tags"]  # no reading yet
    observe(twin, roles, [("fault", T0 + 2000, 1.0)])
    (part,) = twin.due(T0 + 1100, no_kpis)  # a state change goes out at once
    assert (part.body["state"], part.body["state_since"]) == ("fault", T0 + 2000)
    observe(twin, roles, [("fault", T0 + 3000, 0.0), ("running", T0 + 3000, None)],
            Quality.BAD)
    (part,) = twin.due(T0 + 1200, no_kpis)
    assert part.body["state"] == "unknown"
    assert part.body["tags"]["running"]["value"] is None
    assert part.body["tags"]["running"]["quality"] == "BAD"


def test_a_machine_is_sent_at_most_twin_max_hz_unless_its_state_changes(
        catalog: Catalog) -> None:
    roles = PlantRoles(catalog)
    twin = TwinState(catalog, roles)  # streams.twin_max_hz: 2 -> 500 ms apart
    observe(twin, roles, [("running", T0, 1.0), ("fault", T0, 0.0)])
    assert len(twin.due(T0, no_kpis)) == 1
    observe(twin, roles, [("spindle_temp", T0 + 100, 60.0)])
    assert twin.due(T0 + 100, no_kpis) == []  # too soon
    assert twin.due(T0 + 400, no_kpis) == []
    assert [p.body["tags"]["spindle_temp"]["value"] for p in twin.due(T0 + 500, no_kpis)] == [60]
    observe(twin, roles, [("running", T0 + 600, 0.0)])
    assert [p.body["state"] for p in twin.due(T0 + 600, no_kpis)] == ["idle"]
    assert twin.due(T0 + 5000, no_kpis) == []  # nothing changed since


def test_a_state_tag_resent_unchanged_does_not_derive_the_state_again(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    roles = PlantRoles(catalog)
    twin = TwinState(catalog, roles)
    calls: list[int] = []
    restate = twin._restate

    def counted(mi: int) -> None:
        calls.append(mi)
        restate(mi)

    monkeypatch.setattr(twin, "_restate", counted)
    observe(twin, roles, [("running", T0, 1.0), ("fault", T0, 0.0)])
    assert len(calls) == 1
    for k in range(1, 20):  # sampled again and again, the same on/off: nothing to derive
        observe(twin, roles, [("running", T0 + 100 * k, 0.9), ("fault", T0 + 100 * k, 0.1)])
    assert len(calls) == 1
    observe(twin, roles, [("fault", T0 + 3000, 0.0)], Quality.BAD)  # BAD: fault unknown
    assert len(calls) == 2
    observe(twin, roles, [("fault", T0 + 3100, 1.0)])
    assert len(calls) == 3 and twin.state[calls[0]].value == "fault"
    assert twin.state_since[calls[0]] == T0 + 3100


def alarm(version: int, active: bool, acked: bool, state: str, **kw: Any) -> bytes:
    doc = {"schema": "millstream.alarms.v1", "alarm_id": "al-1", "asset": CNC,
           "tags": [f"{CNC}/spindle_temp"], "severity": "high", "state": state,
           "message": "spindle too hot", "started_at": T0, "ended_at": None,
           "updated_at": T0 + version, "version": version, "active": active,
           "acknowledged": acked, "action": "x", "actor": "streams", "note": "", "score": 2.0,
           "detectors": ["sad"], "shelved_until": None, **kw}
    return json.dumps(doc).encode()


def test_alarms_stay_while_active_or_unacknowledged(catalog: Catalog) -> None:
    relay, merger = Relay(catalog), TwinMerger(catalog)
    rec = merger.apply(relay.alarm(alarm(1, True, False, "active")), T0)
    assert rec is not None and [a.state for a in rec.alarms] == ["active"]
    assert merger.apply(relay.alarm(alarm(1, True, False, "active")), T0 + 1) is None
    rec = merger.apply(relay.alarm(alarm(3, False, False, "cleared")), T0 + 2)
    assert rec is not None and [a.state for a in rec.alarms] == ["cleared"]
    # version 2 arrives after version 3 (a redelivery): ignored
    assert merger.apply(relay.alarm(alarm(2, True, True, "acknowledged")), T0 + 3) is None
    rec = merger.apply(relay.alarm(alarm(4, False, True, "closed")), T0 + 4)
    assert rec is not None and rec.alarms == []
    assert merger.apply(relay.alarm(alarm(3, False, False, "cleared")), T0 + 5) is None
    other = relay.alarm(alarm(1, True, False, "active", alarm_id="al-2", severity="critical",
                              started_at=T0 + 9))
    rec = merger.apply(other, T0 + 6)
    assert rec is not None and [a.alarm_id for a in rec.alarms] == ["al-2"]
    jsonschema.validate(json.loads(rec.encode()), schema("millstream.twin"))


@pytest.mark.parametrize(("payload", "reason"), [
    (b"nope", "not-json"),
    (json.dumps({"schema": "millstream.alarms.v2"}).encode(), "wrong-schema"),
    (alarm(1, True, False, "active", started_at="yesterday"), "bad-field"),
    (alarm(1, True, False, "active", tags=[1]), "bad-field"),
    (alarm(1, True, False, "active", asset="acme/plant1/x/y/ghost"), "unknown-machine"),
])
def test_a_bad_alarm_is_refused_with_its_reason(catalog: Catalog, payload: bytes,
                                                reason: str) -> None:
    with pytest.raises(ContractError) as err:
        Relay(catalog).alarm(payload)
    assert err.value.reason == reason


def result(command_id: str, at: int, setpoint: str = "cnc-01/spindle_speed_sp") -> bytes:
    return CommandResult(command_id, setpoint, 5000.0, 5000.0, "applied", "written, read back",
                         at).encode()


def test_the_newest_command_result_is_the_last_command(catalog: Catalog) -> None:
    relay, merger = Relay(catalog), TwinMerger(catalog)
    inp = relay.command_result(result("c-2", T0 + 10))
    assert inp.machine == CNC and inp.body["setpoint"] == f"{CNC}/spindle_speed_sp"
    rec = merger.apply(inp, T0)
    assert rec is not None and rec.last_command is not None
    assert (rec.last_command.command_id, rec.last_command.value, rec.last_command.reason) == (
        "c-2", 5000.0, "written, read back")
    assert merger.apply(relay.command_result(result("c-1", T0 + 5)), T0 + 1) is None  # older
    with pytest.raises(ContractError, match="not in the catalog") as err:
        relay.command_result(result("c-3", T0, "cnc-01/ghost"))
    assert err.value.reason == "unknown-tag"


def test_parts_merge_tag_by_tag_and_seeds_only_replace_older_state(catalog: Catalog) -> None:
    proc = FrameProcessor(catalog)
    fb = FrameBuilder("opcua-sim", epoch=1)
    for name, v in (("running", 1.0), ("fault", 0.0), ("spindle_temp", 61.0)):
        fb.add(f"{CNC}/{name}", T0, v)
    frame = fb.flush()
    assert frame is not None
    out = proc.process(b"opcua-sim", frame.encode(), "t.readings", 0, 0, T0 + 100)
    (part,) = out.twin
    merger = TwinMerger(catalog)
    rec = merger.apply(TwinInput.decode(part.encode()), T0 + 200)
    assert rec is not None and rec.state == "running" and rec.updated == T0 + 200
    assert (rec.site, rec.area, rec.line, rec.name) == ("plant1", "machining", "line1", "cnc-01")
    jsonschema.validate(json.loads(rec.encode()), schema("millstream.twin"))
    assert TwinRecord.decode(rec.encode()) == rec
    # a part from another worker that has only a newer spindle_speed: temp is kept
    older = TwinInput("part", CNC, {**part.body, "at": T0 + 50, "tags": {
        "spindle_speed": {**part.body["tags"]["spindle_temp"], "value": 8000.0,
                          "ts": T0 + 50, "unit": "rpm", "path": f"{CNC}/spindle_speed"}},
        "state": "idle"})
    rec2 = merger.apply(older, T0 + 300)
    assert rec2 is not None and rec2.state == "running"  # an older part's state: not taken
    assert set(rec2.tags) == {"running", "fault", "spindle_temp", "spindle_speed"}
    fresh = TwinMerger(catalog)
    assert fresh.seed([rec2]) == 1 and merger.seed([rec]) == 0  # rec is older than rec2
    row = dict(zip(TWIN_COLUMNS, (c[0] for c in twin_columns(rec2.encode())), strict=True))
    assert row["tag_values"]["spindle_speed"] == 8000.0 and row["state"] == "running"
    assert json.loads(row["doc"])["machine"] == CNC


@pytest.mark.parametrize("change", [
    {"state": "asleep"}, {"tags": {"x": {"path": "p"}}}, {"updated": "now"},
    {"last_command": {"command_id": "c"}}, {"schema": "millstream.twin.v0"},
])
def test_the_twin_decoder_names_the_bad_field(catalog: Catalog, change: dict[str, Any]) -> None:
    doc = TwinRecord(CNC, "plant1", "machining", "line1", "cnc-01", "idle", T0, T0).to_dict()
    with pytest.raises(ContractError):
        TwinRecord.from_dict({**doc, **change})
    jsonschema.validate(doc, schema("millstream.twin"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, **change}, schema("millstream.twin"))


def test_the_twin_topic_is_compacted_and_its_inputs_spread_like_readings() -> None:
    t = Topics("p")
    assert t.config(t.twin)["cleanup.policy"] == "compact"
    assert t.twin in t.all() and t.kpis in t.all() and t.twin_inputs in t.all()
    assert t.partitions(t.twin_inputs) == t.partitions(t.readings)
