"""Detectors and alarm episodes in a partition's checkpoint: FrameProcessor.snapshot(p)
through the checkpoint codec into a fresh processor, which goes on as if nothing happened.
"""

from __future__ import annotations

import numpy as np

from schemas.alarms import Alarm, AlarmAction
from schemas.catalog import Catalog, RuleSpec
from schemas.readings import FrameBuilder
from streams.processor import FrameProcessor
from streams.state import decode_state, encode_state
from tests.support.cnc_frames import CNC, T0, cnc_second

PRESS = "acme/plant1/forming/line2/press-01"
WARM, HOT, COOL = 60, 6, 40  # seconds: normal, spindle_temp +3 degC, normal again



def _press(i: int) -> bytes:
    fb = FrameBuilder("modbus-sim", epoch=1, next_seq=1 + 10 * i)
    for j in range(10):
        fb.add(f"{PRESS}/oil_temp", T0 + i * 1000 + j * 100, 45.0 + 0.01 * j)
    f = fb.flush()
    assert f is not None
    return f.encode()


def _inputs() -> list[tuple[int, bytes]]:
    """(partition, message): cnc-01 on partition 0 with a fault, the press on 1."""
    rng = np.random.default_rng(11)
    bumps = [0.0] * WARM + [3.0] * HOT + [0.0] * COOL
    out = []
    for i, bump in enumerate(bumps):
        out += [(0, cnc_second(i, bump, rng)), (1, _press(i))]
    return out


def _at(i: int) -> int:
    return T0 + i * 1000 + 1500


def _ack(alarm: Alarm) -> bytes:
    return AlarmAction("a1", alarm.alarm_id, CNC, "ack", "alice", "on it", _at(0)).encode()


def _history(records: list[Alarm]) -> list[tuple[str, str, str, int]]:
    return [(a.alarm_id, a.action, a.state, a.version) for a in records]


def test_an_open_episode_and_its_ack_survive_a_checkpoint_into_a_fresh_processor(
        catalog: Catalog) -> None:
    """Partition 0 is checkpointed while cnc-01's alarm is open and acknowledged, dropped,
    and restored into a processor that never saw it: the same episode clears and closes
    there (not a second one), exactly as in a processor that ran uninterrupted; partition 1
    stays behind untouched."""
    inputs = _inputs()
    whole, first, second = (FrameProcessor(catalog) for _ in range(3))
    ref: list[Alarm] = []
    got: list[Alarm] = []
    scores: dict[str, list[tuple[str, float]]] = {"ref": [], "got": []}  # after the cut
    cut = None
    for k, (p, msg) in enumerate(inputs):
        i = k // 2
        out = whole.process(None, msg, "r", p, k, _at(i))
        ref += out.alarms
        if cut is not None and p == 0:
            scores["ref"] += [(a.anomaly_id, a.score) for a in out.anomalies]
        if cut is None:
            got += first.process(None, msg, "r", p, k, _at(i)).alarms
            if any(a.action == "raised" for a in got) and p == 0:
                [raised] = got
                for proc, sink in ((whole, ref), (first, got)):
                    out, owner = proc.operator("action", _ack(raised), "t.alarm-actions", 0,
                                               0, _at(i))
                    assert owner == 0 and not out.deadletters
                    sink += out.alarms
                blob = encode_state(first.snapshot(0, arrays=True))
                first.drop(0)
                assert first.alarming.alarms.find(raised.alarm_id) is None
                second.restore(decode_state(blob), 0, _at(i))
                cut = k
        else:
            out = (second if p == 0 else first).process(None, msg, "r", p, k, _at(i))
            got += out.alarms
            if p == 0:
                scores["got"] += [(a.anomaly_id, a.score) for a in out.anomalies]
    assert cut is not None, "no alarm was raised: the fault is too small for the detectors"
    assert [a.action for a in ref] == ["raised", "acknowledged", "closed"]
    assert _history(got) == _history(ref)
    assert got[-1].asset == CNC and got[-1].ended_at is not None
    # the detectors went on where they were: the same anomalies with the same scores
    assert scores["ref"] and scores["got"] == scores["ref"]


def test_a_replay_raises_the_same_alarm_id(catalog: Catalog) -> None:
    """Alarm ids come from the machine and the episode's first window, so a worker that
    replays the same readings after a crash publishes the same ids (ClickHouse keeps one
    episode, and an operator's action names an id that still exists)."""
    def run() -> list[Alarm]:
        proc = FrameProcessor(catalog)
        return [a for k, (p, msg) in enumerate(_inputs())
                for a in proc.process(None, msg, "r", p, k, _at(k // 2)).alarms]

    a, b = run(), run()
    assert a and [x.alarm_id for x in a] == [x.alarm_id for x in b]
    assert a[0].started_at >= T0 + WARM * 1000 - 5000


def test_a_source_not_in_the_catalog_keeps_its_machines_alarms_in_its_partition(
        catalog: Catalog) -> None:
    """Frames of catalog tags from a source the catalog does not name (a gateway, a test
    feed) are detected on too; the machines it carried are its partition's: their alarms
    move with its checkpoint, operators' actions find them, and a drop forgets them."""
    proc = FrameProcessor(catalog)
    rng = np.random.default_rng(11)
    alarms: list[Alarm] = []
    for i, bump in enumerate([0.0] * WARM + [3.0] * HOT):
        out = proc.process(None, cnc_second(i, bump, rng, "gateway-7"), "r", 2, i, _at(i))
        assert not out.deadletters
        alarms += out.alarms
    [raised] = [a for a in alarms if a.action == "raised"]
    assert raised.asset == CNC
    assert proc.alarming.machines(["gateway-7"]) == {CNC}
    out, owner = proc.operator("action", _ack(raised), "t.alarm-actions", 2, 0, _at(70))
    assert owner == 2 and [a.state for a in out.alarms] == ["acknowledged"]
    snap = decode_state(encode_state(proc.snapshot(2, arrays=True)))
    assert set(snap["alarming"]["alarms"]["points"]) == {CNC}
    proc.drop(2)
    assert proc.alarming.alarms.find(raised.alarm_id) is None
    fresh = FrameProcessor(catalog)
    fresh.restore(snap, 2, _at(70))
    episode = fresh.alarming.alarms.find(raised.alarm_id)
    assert episode is not None and episode.acknowledged
    assert fresh.alarming.machines(["gateway-7"]) == {CNC}


def test_a_rule_on_alarms_fires_beside_the_fast_path_with_a_replayable_command_id(
        catalog: Catalog) -> None:
    """A ``sustained_anomaly`` rule ``on: alarms`` fires once when cnc-01's episode is raised
    (its command id named by the episode: a replay issues the same), while the shipped
    per-reading limit on the same tag stays on the fast path and fires on a breach."""
    rule = RuleSpec.model_validate({
        "name": "cnc-alarm-slowdown", "kind": "sustained_anomaly", "on": "alarms",
        "tag": "cnc-01/spindle_temp", "cooldown_s": 30,
        "action": {"setpoint": "cnc-01/spindle_speed_sp", "value": 6000}})
    cat = catalog.model_copy(update={"rules": [*catalog.rules, rule]})

    def run() -> tuple[FrameProcessor, list[tuple[str, str]]]:
        proc = FrameProcessor(cat)
        rng = np.random.default_rng(11)
        cmds = []
        for i, bump in enumerate([0.0] * WARM + [3.0] * HOT + [0.0] * COOL):
            out = proc.process(None, cnc_second(i, bump, rng), "r", 0, i, _at(i))
            cmds += [(c.rule, c.command_id) for c in out.commands]
        return proc, cmds

    proc, cmds = run()
    assert [r for r, _ in cmds] == ["cnc-alarm-slowdown"]
    assert run()[1] == cmds
    assert proc.fastpath.watches("opcua-sim")
    hot = proc.process(None, cnc_second(200, 35.0, np.random.default_rng(1)), "r", 0, 200,
                       _at(200))  # spindle_temp ~94 degC > 85
    assert "spindle-overheat" in [c.rule for c in hot.commands]
