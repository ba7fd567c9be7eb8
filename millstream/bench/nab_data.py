"""Reading the Numenta Anomaly Benchmark's files: data, label windows, profiles.

Layout (NAB's own): ``data/<category>/<name>.csv`` (``timestamp,value``),
``labels/combined_windows.json`` (``{"<category>/<name>.csv": [[start, end], ...]}``),
``labels/combined_labels.json`` (the anomaly timestamps), ``config/profiles.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from millstream.bench.nab_score import PROFILE_NAMES, FileLabels, Profile, window_rule_mismatches
from schemas.exceptions import MillstreamError

__all__ = ["NabDataError", "NabFile", "default_nab_path", "load_files", "load_profiles"]

logger = logging.getLogger(__name__)


class NabDataError(MillstreamError):
    """The NAB directory is missing or a file in it is malformed."""


@dataclass(frozen=True)
class NabFile:
    """One NAB series: its key in the labels, its values, and its labelled windows."""

    key: str  # "<category>/<name>.csv"
    values: npt.NDArray[np.float64]
    labels: FileLabels


def default_nab_path() -> Path:
    """``../shared/datasets/NAB`` relative to the repository, or /work/shared's copy."""
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "datasets" / "NAB",
                      Path("/work/shared/datasets/NAB")):
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "datasets" / "NAB"


def load_profiles(root: Path) -> list[Profile]:
    """The three profiles of ``config/profiles.json``, under the bench's result names."""
    path = root / "config" / "profiles.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NabDataError(f"cannot read NAB profiles {path}: {exc}; pass --data with the "
                           "NAB directory (it holds config/profiles.json)") from exc
    out = []
    for name, short in PROFILE_NAMES.items():
        m = raw[name]["CostMatrix"]
        out.append(Profile(short, float(m["tpWeight"]), float(m["fpWeight"]),
                           float(m["fnWeight"])))
    return out


def load_files(root: Path, only: list[str] | None = None) -> list[NabFile]:
    """Every labelled data file (or those in ``only``), sorted by key."""
    try:
        windows = json.loads((root / "labels" / "combined_windows.json").read_text())
        points = json.loads((root / "labels" / "combined_labels.json").read_text())
    except (OSError, ValueError) as exc:
        raise NabDataError(f"cannot read NAB labels under {root}: {exc}; pass --data with "
                           "the NAB directory (it holds labels/combined_windows.json)") from exc
    keys = sorted(windows) if only is None else only
    files = []
    for key in keys:
        ts, values = _read_csv(root / "data" / key)
        rows = tuple(_window_rows(key, ts, start, end) for start, end in windows[key])
        labels = FileLabels(key, len(values), rows)
        for lo, hi, expected in window_rule_mismatches(labels, len(points.get(key, []))):
            logger.debug("%s: window rows %d..%d is %d wide, the 10%% rule gives %d "
                         "(clipped or merged)", key, lo, hi, hi - lo + 1, expected)
        files.append(NabFile(key, values, labels))
    return files


def _read_csv(path: Path) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            rows = [(r[0], r[1]) for r in reader if r]
    except (OSError, StopIteration, IndexError) as exc:
        raise NabDataError(f"cannot read NAB data file {path}: {exc!r}") from exc
    ts = np.array([t[:19] for t, _ in rows], dtype="datetime64[s]")
    values = np.array([float(v) for _, v in rows], dtype=np.float64)
    return ts, values


def _window_rows(key: str, ts: npt.NDArray[np.datetime64], start: str,
                 end: str) -> tuple[int, int]:
    lo = int(np.searchsorted(ts, np.datetime64(start[:19]), "left"))
    hi = int(np.searchsorted(ts, np.datetime64(end[:19]), "right")) - 1
    if not 0 <= lo <= hi < len(ts):
        raise NabDataError(f"{key}: window {start}..{end} matches no rows of the data file")
    return lo, hi
