"""The detection layer in the worker: vectorised per source, held values, quality and run
state gating, operator feedback, and its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from schemas.aggregates import AggregateFrame
from schemas.alarms import Alarm, AnomalyFeedback
from schemas.catalog import Catalog
from schemas.events import Anomaly
from streams.detection import DetectionLayer, TagRunner
from streams.detectors import TagBank
from streams.exceptions import StateVersionError
from streams.processor import FrameProcessor
from tests.support.cnc_frames import CNC, LEVELS, T0, cnc_second

NOW = T0 + 3_600_000
COMP = "acme/plant1/utilities/air/compressor-01"
PRESS = "acme/plant1/forming/line2/press-01"
COMP_LEVELS = {"discharge_pressure": 8.0, "discharge_temp": 79.0, "inlet_temp": 20.0,
               "motor_current": 112.0, "motor_speed": 1800.0, "vibration_rms": 1.8}


def frame(i: int, levels: dict[str, float], machine: str = CNC, source: str = "opcua-sim",
          rng: np.random.Generator | None = None, good: float = 1.0,
          extra: dict[str, float] | None = None, drop: tuple[str, ...] = ()) -> AggregateFrame:
    """One closed 1 s window of the machine's tags: each tag's mean with 1% noise."""
    rng = rng or np.random.default_rng(i)
    tags, mean = [], []
    for name, level in {**levels, **(extra or {})}.items():
        if name in drop:
            continue
        tags.append(f"{machine}/{name}")
        mean.append(level * (1 + 0.01 * float(rng.normal())) if name != "running" else level)
    n = len(tags)
    std = [abs(m) * 0.01 for m in mean]
    return AggregateFrame(source, 1000, tags, [T0 + i * 1000] * n, [10] * n, mean, mean, mean,
                          std, mean, mean, [good] * n)


def test_one_bank_step_per_window_for_all_tags(catalog: Catalog,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    score = TagBank.score

    def counting(self: TagBank, x: np.ndarray) -> object:
        calls.append(len(x))
        return score(self, x)

    monkeypatch.setattr(TagBank, "score", counting)
    layer = DetectionLayer(catalog)
    for i in range(5):
        layer.observe(frame(i, LEVELS))
    # opcua-sim: cnc-01's and compressor-01's analog tags, mean and std, in one array
    assert calls == [2 * (6 + 6)] * 5


def test_a_tag_that_stops_reporting_is_held_and_found_stuck(catalog: Catalog) -> None:
    """OPC-UA reports by exception: no reading means an unchanged value, so a frozen
    sensor is a tag that went silent while its machine's other tags did not."""
    layer = DetectionLayer(catalog)
    rng = np.random.default_rng(1)
    for i in range(60):
        layer.observe(frame(i, COMP_LEVELS, COMP, rng=rng))
    found: list[Anomaly] = []
    for i in range(60, 80):
        for ev in layer.observe(frame(i, COMP_LEVELS, COMP, rng=rng, drop=("discharge_temp",))):
            found += ev.anomalies
    stuck = [a for a in found if a.tag == f"{COMP}/discharge_temp"]
    assert stuck, "the silent tag was not flagged"
    assert {a.detector for a in stuck} & {"bank:stuck", "bank:level_shift", "bank:variance"}
    assert all(a.asset == COMP and a.scope == "tag" for a in stuck)
    assert not [a for a in found if a.tag != f"{COMP}/discharge_temp" and a.scope == "tag"]


def test_bad_quality_windows_are_scored_but_not_learned(catalog: Catalog) -> None:
    layer = DetectionLayer(catalog)
    for i in range(20):
        layer.observe(frame(i, LEVELS, good=0.5))
    [bank] = [r for r in layer._sources["opcua-sim"].runners if r.spec.kind == "bank"]
    assert isinstance(bank, TagRunner) and isinstance(bank.det, TagBank)
    assert int(bank.det.members[0].n_seen.max()) == 0  # nothing learned
    for i in range(20, 40):
        layer.observe(frame(i, LEVELS))
    assert int(bank.det.members[0].n_seen.max()) == 20


def test_a_stopped_machine_is_not_scored(catalog: Catalog) -> None:
    layer = DetectionLayer(catalog)
    rng = np.random.default_rng(2)
    for i in range(40):
        layer.observe(frame(i, LEVELS, rng=rng, extra={"running": 1.0}))
    stopped = {**LEVELS, "spindle_speed": 0.0, "motor_current": 8.0}
    evidence = [ev for i in range(40, 60)
                for ev in layer.observe(frame(i, stopped, rng=rng, extra={"running": 0.0}))]
    assert evidence and all(ev.running is False and not ev.anomalies for ev in evidence)
    assert all(np.isnan(ev.score) for ev in evidence)



def _run(proc: FrameProcessor, start: int, bumps: list[float], rng: np.random.Generator
         ) -> list[Alarm]:
    out: list[Alarm] = []
    for k, bump in enumerate(bumps):
        i = start + k
        res = proc.process(b"opcua-sim", cnc_second(i, bump, rng), "t", 0, i,
                           T0 + i * 1000 + 1500)
        out += res.alarms
    return out


@pytest.mark.parametrize("marked", [True, False])
def test_a_false_positive_pattern_no_longer_alarms(catalog: Catalog, marked: bool) -> None:
    """An operator marks an episode a false positive: the same pattern later raises no
    alarm (without the mark it does), and a clearly bigger one still does."""
    proc = FrameProcessor(catalog)
    rng = np.random.default_rng(3)
    pattern = [0.0] * 30 + [1.5] * 6 + [0.0] * 40  # spindle_temp +1.5 degC for 6 s
    first = _run(proc, 0, [0.0] * 60 + pattern, rng)
    raised = [a for a in first if a.action == "raised"]
    assert len(raised) == 1 and raised[0].asset == CNC
    assert f"{CNC}/spindle_temp" in raised[0].tags
    if marked:
        fb = AnomalyFeedback("f1", raised[0].alarm_id, CNC, "false-positive", "bob",
                             "tool warm-up", NOW)
        out, _ = proc.operator("feedback", fb.encode(), "t.anomaly-feedback", 0, 0, NOW)
        assert [a.action for a in out.alarms] == ["false-positive"] and not out.deadletters
    again = [a for a in _run(proc, 136, pattern, rng) if a.action == "raised"]
    assert len(again) == (0 if marked else 1)
    bigger = _run(proc, 212, [0.0] * 30 + [6.0] * 6 + [0.0] * 20, rng)
    assert [a.action for a in bigger if a.action == "raised"] == ["raised"]


def test_actions_on_unknown_alarms_are_dead_lettered(catalog: Catalog) -> None:
    proc = FrameProcessor(catalog)
    fb = AnomalyFeedback("f1", "nope", CNC, "false-positive", "bob", "", NOW)
    out, _ = proc.operator("feedback", fb.encode(), "t.anomaly-feedback", 1, 7, NOW)
    [dl] = out.deadletters
    assert dl.reason == "feedback-refused" and "nope" in dl.detail and dl.offset == 7
    out, _ = proc.operator("action", b"{not json", "t.alarm-actions", 0, 3, NOW)
    assert [d.reason for d in out.deadletters] == ["not-json"]


def test_state_round_trip_gives_the_same_scores(catalog: Catalog) -> None:
    a = DetectionLayer(catalog)
    rng = np.random.default_rng(4)
    for i in range(80):
        a.observe(frame(i, LEVELS, rng=rng))
    b = DetectionLayer(catalog)
    b.restore(json.loads(json.dumps(a.snapshot())))
    for i in range(80, 100):
        f = frame(i, {**LEVELS, "spindle_temp": 70.0} if i > 90 else LEVELS, rng=rng)
        ea, eb = a.observe(f), b.observe(f)
        assert [e.score for e in ea] == pytest.approx([e.score for e in eb], nan_ok=True)
        assert [[x.detector for x in e.anomalies] for e in ea] == [
            [x.detector for x in e.anomalies] for e in eb]
    assert any(e.anomalies for e in ea)
    assert a.snapshot(sources=["modbus-sim"])["sources"] == {}


def test_the_readme_detector_and_alarm_examples_load(catalog: Catalog) -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("## Anomalies and alarms")
    blocks = re.findall(r"```yaml\n(.*?)```", text[start:text.index("\n## ", start + 1)],
                        re.DOTALL)
    assert len(blocks) == 2
    doc = catalog.model_dump(by_alias=True, exclude_none=True)
    for block in blocks:
        doc.update(yaml.safe_load(block))
    loaded = Catalog.model_validate(doc)
    assert [s.label for s in loaded.detector_specs()] == ["bank", "pca", "noisy"]
    assert loaded.alarms.on_score == 1.5
    DetectionLayer(loaded).observe(frame(0, LEVELS))  # the params configure real detectors


def test_catalog_detector_choices(catalog: Catalog) -> None:
    from pydantic import ValidationError

    from schemas.exceptions import CatalogError

    doc = catalog.model_dump(by_alias=True, exclude_none=True)
    doc.pop("detectors")
    bare = Catalog.model_validate(doc)  # no detector section: the bank and the PCA's SPE
    assert [(s.kind, s.params) for s in bare.detector_specs()] == [
        ("bank", {}), ("pca", {"t2": False})]
    legacy = Catalog.model_validate({**doc, "detector": {"kind": "sad", "warmup_windows": 5}})
    layer = DetectionLayer(legacy)  # the foundation's SAD still runs, per tag and feature
    rng = np.random.default_rng(6)
    for i in range(30):
        layer.observe(frame(i, LEVELS, rng=rng))
    hot = layer.observe(frame(30, {**LEVELS, "spindle_temp": 90.0}, rng=rng))
    assert any(a.detector == "sad" and a.tag.endswith("spindle_temp")
               for e in hot for a in e.anomalies)
    with pytest.raises(ValidationError, match="runs per machine"):
        Catalog.model_validate({**doc, "detectors": [{"kind": "pca", "tags": ["cnc-01/x"]}]})
    with pytest.raises(ValidationError, match="unique"):
        Catalog.model_validate({**doc, "detectors": [{"kind": "bank"}, {"kind": "bank"}]})
    wrong = Catalog.model_validate({**doc, "detectors": [{"kind": "bank",
                                                          "params": {"warmpu": 5}}]})
    with pytest.raises(CatalogError, match=r"warmpu.*its parameters: detectors, warmup"):
        FrameProcessor(wrong)  # when the worker starts, not on its first frame


def test_per_source_state_moves_between_processors(catalog: Catalog) -> None:
    """A partition's sources hand their detectors and alarms over (checkpoint, rebalance)."""
    a = FrameProcessor(catalog)
    rng = np.random.default_rng(8)
    alarms = _run(a, 0, [0.0] * 60 + [3.0] * 6, rng)  # cnc-01 (opcua-sim) alarms
    [raised] = [x for x in alarms if x.action == "raised"]
    a.alarming.detection.observe(frame(0, {"hydraulic_pressure": 200.0}, PRESS, "modbus-sim"))
    snap = json.loads(json.dumps(a.alarming.snapshot(["opcua-sim"])))
    assert set(snap["detection"]["sources"]) == {"opcua-sim"}
    assert set(snap["alarms"]["points"]) == {CNC}
    b = FrameProcessor(catalog)
    b.alarming.detection.observe(frame(0, {"hydraulic_pressure": 200.0}, PRESS, "modbus-sim"))
    b.alarming.restore(snap, replace=False)  # keeps modbus-sim
    assert set(b.alarming.detection._sources) == {"opcua-sim", "modbus-sim"}
    assert b.alarming.alarms.find(raised.alarm_id) is not None and b.alarming.alarms.open_count == 1
    later_a = _run(a, 66, [0.0] * 30, np.random.default_rng(9))
    later_b = _run(b, 66, [0.0] * 30, np.random.default_rng(9))
    assert [(x.alarm_id, x.action, x.version) for x in later_a] == [
        (x.alarm_id, x.action, x.version) for x in later_b] == [(raised.alarm_id, "cleared", 2)]
    b.alarming.drop(["opcua-sim"])
    assert set(b.alarming.detection._sources) == {"modbus-sim"}
    assert b.alarming.alarms.find(raised.alarm_id) is None
    with pytest.raises(StateVersionError, match="River"):
        b.alarming.detection.restore({**snap["detection"], "river": "0.1.0"})

