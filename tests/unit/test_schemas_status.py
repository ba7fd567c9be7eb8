"""Status files are best effort: written atomically, and a failure is logged, not raised."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.status import read_status, write_status


def test_round_trip_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    assert read_status(path) is None
    write_status(path, {"produced": 1})
    write_status(path, {"produced": 2})
    assert read_status(path) == {"produced": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary left behind


def test_no_path_writes_nothing() -> None:
    write_status(None, {"produced": 1})


def test_an_unwritable_path_is_logged_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing-folder" / "s.json"
    write_status(path, {"produced": 1})
    assert read_status(path) is None
    assert "cannot write the status file" in caplog.text and str(path) in caplog.text
