"""``millstream bench nab`` end to end on a small NAB directory, and its stream mapping."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from millstream.bench.nab import Stepper, millstream_stepper, stream, windowed_gaussian_stepper
from millstream.bench.nab_data import NabDataError, default_nab_path, load_files
from millstream.cli import main
from streams.detectors.surprise import HoldOff, Surprise

KEYS = ["artificialWithAnomaly/art_daily_jumpsup.csv",
        "realKnownCause/ec2_request_latency_system_failure.csv"]


def small_nab(tmp_path: Path) -> Path:
    """A NAB directory holding two of the real files, their labels and the profiles."""
    src = default_nab_path()
    for key in KEYS:
        (tmp_path / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "data" / key, tmp_path / "data" / key)
    (tmp_path / "labels").mkdir()
    for name in ("combined_windows.json", "combined_labels.json"):
        full = json.loads((src / "labels" / name).read_text())
        (tmp_path / "labels" / name).write_text(json.dumps({k: full[k] for k in KEYS}))
    (tmp_path / "config").mkdir()
    shutil.copy(src / "config" / "profiles.json", tmp_path / "config" / "profiles.json")
    return tmp_path


def test_bench_nab_prints_its_scores_as_the_last_json_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = small_nab(tmp_path)
    assert main(["bench", "nab", "--json", "--data", str(root)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["files"] == 2
    for key in ("standard", "reward_low_fp", "reward_low_fn"):
        assert -100.0 <= result[key] <= 100.0
        assert -100.0 <= result["windowed_gaussian"][key] <= 100.0


def test_bench_nab_names_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NabDataError, match="--data"):
        load_files(tmp_path / "nope")


@pytest.mark.parametrize("make", [millstream_stepper, windowed_gaussian_stepper])
def test_stream_has_no_look_ahead(tmp_path: Path, make: Callable[[list[str]], Stepper]) -> None:
    """Changing a file's future values never changes its scores before that point, nor
    another file's scores: files are independent tags fed one value per step."""
    files = load_files(small_nab(tmp_path))
    before = stream(files, make)
    cut = 2000
    files[1].values[cut:] = files[1].values[cut:] * 10 + 5
    after = stream(files, make)
    np.testing.assert_array_equal(before[1][:cut], after[1][:cut])
    assert not np.array_equal(before[1][cut:], after[1][cut:])
    np.testing.assert_array_equal(before[0], after[0])


def test_surprise_and_hold_off_round_trip_and_one_event_per_incident() -> None:
    surprise, hold = Surprise(warmup=20), HoldOff(steps=50, trigger=2.0)
    rng = np.random.default_rng(0)
    quiet = [hold.apply(surprise.update(rng.uniform(0, 0.5, 3))) for _ in range(300)]
    assert max(float(np.max(q)) for q in quiet[50:]) < 2.0
    surprise = Surprise.from_state(json.loads(json.dumps(surprise.state())))
    hold = HoldOff.from_state(json.loads(json.dumps(hold.state())))
    burst = [hold.apply(surprise.update(np.array([50.0, 0.2, np.nan]))) for _ in range(40)]
    fired = [t for t, b in enumerate(burst) if b[0] > 2.0]
    assert len(fired) == 1, "an incident raises one event, then holds off"
    assert all(b[1] < 2.0 and b[2] == 0.0 for b in burst)
