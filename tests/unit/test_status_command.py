"""``millstream status``: what each stage's counters mean, the rates, and the table."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from millstream.cli import main
from millstream.commands.status import format_table
from millstream.stages import StageView, Target, _Look, _view, find_run_dir, stage_of


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_table_aligns_numbers_right_and_says_why_a_stage_is_not_up() -> None:
    views = [
        StageView("connect opcua-sim", "connector", "up", lag=12, in_per_s=201.5,
                  out_per_s=200.0, errors=0),
        StageView("worker", "streams", "not ready",
                  "Kafka at k:9092 did not answer within 2 s", lag=1_234_567, errors=3),
        StageView("sink", "sink", "down", "no answer at http://127.0.0.1:9/healthz",
                  last_error="x" * 200),
    ]
    lines = format_table(views).splitlines()
    assert lines[0].split() == ["STAGE", "STATE", "LAG", "IN/S", "OUT/S", "ERRORS", "LAST",
                                "ERROR"]
    assert lines[1].startswith("connect opcua-sim  up ")
    assert "201.5" in lines[1] and " 200 " in lines[1] and lines[1].endswith(" -")
    assert "not ready: Kafka at k:9092" in lines[2] and "1,234,567" in lines[2]
    assert lines[3].endswith("x" * 69 + "…")  # a long error is cut, not wrapped
    lag_end = lines[0].index("LAG") + 3  # numbers end under their header
    assert lines[1][:lag_end].endswith("12") and lines[2][:lag_end].endswith("1,234,567")


def _look(doc: dict, at: float) -> _Look:
    return _Look(doc, "up", None, None, at)


def test_rates_come_from_the_counters_over_the_documents_own_times() -> None:
    t = 1_700_000_000_000
    a = {"stage": "connector", "source": "s", "produced": 100, "delivered": 90, "failed": 0,
         "errors": 1, "updated_at": t, "last_error": "cannot reach s"}
    b = {**a, "produced": 300, "delivered": 280, "updated_at": t + 2000}
    view = _view(Target(url="http://x"), _look(a, 0), _look(b, 99))
    assert view is not None
    assert (view.name, view.in_per_s, view.out_per_s) == ("connect s", 100.0, 95.0)
    assert (view.lag, view.errors, view.last_error) == (20, 1, "cannot reach s")
    sink_a = {"stage": "sink", "consumed": 10, "inserted": {"readings": 100, "aggregates": 10},
              "lag": 4, "insert_errors": 0, "deadlettered": 2, "updated_at": t}
    sink_b = {**sink_a, "inserted": {"readings": 300, "aggregates": 30}, "updated_at": t + 1000}
    view = _view(Target(), _look(sink_a, 0), _look(sink_b, 1))
    assert view is not None and (view.out_per_s, view.lag, view.errors) == (220.0, 4, 2)
    once = _view(Target(), _look(sink_a, 0), None)
    assert once is not None and once.in_per_s is None  # one look: no rate


def test_older_documents_are_recognised_by_their_keys() -> None:
    assert stage_of({"source": "a", "produced": 1}) == "connector"
    assert stage_of({"app_id": "x"}) == "streams"
    assert stage_of({"inserted": {}}) == "sink"
    assert stage_of({"received": 0}) == "executor"
    assert stage_of({"readings_produced": 5}) is None  # not a stage (e.g. a summary)


def test_status_reads_the_newest_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    for d in (old, new):
        d.mkdir(parents=True)
    (old / "sink.json").write_text(json.dumps({"stage": "sink", "inserted": {}}))
    os.utime(old, (1, 1))
    (new / "worker.json").write_text(json.dumps(
        {"stage": "streams", "readings": 5, "running": True, "at": _now_ms()}))
    (new / "executor.json").write_text(json.dumps(
        {"received": 0, "updated_at": _now_ms() - 60_000}))  # its writer is gone
    (new / "source-s.json").write_text(json.dumps(
        {"source": "s", "produced": 1, "delivered": 1, "running": False}))
    (new / "notes.json").write_text("[1, 2]")  # not a status: ignored
    assert find_run_dir(tmp_path) == new
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    assert main(["status", "--json", "--interval", "0"]) == 1  # not every stage is up
    doc = json.loads(capsys.readouterr().out)
    assert doc["run_dir"] == str(new)
    states = {s["name"]: (s["state"], s["reason"]) for s in doc["stages"]}
    assert list(states) == ["connect s", "worker", "executor"]  # in data order
    assert states["worker"] == ("up", None)
    assert states["connect s"] == ("stopped", None)
    assert states["executor"][0] == "down" and "last written 60 s ago" in states["executor"][1]


def test_status_without_any_stage_says_how_to_start_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    assert main(["status"]) == 1
    assert "make demo" in capsys.readouterr().err
