"""``millstream bench nab``: the streaming detectors on the Numenta Anomaly Benchmark.

The mapping: each NAB file is one tag, and each of its values one closed window's value of
that tag. All files run side by side as the columns of one :class:`TagBank`, step ``t``
feeding every file's ``t``-th value (NaN once a file has ended), one value at a time and
with no look-ahead: exactly how the worker feeds a window's features of all tags per step.
A :class:`KnnDetector` runs beside the bank on the same columns, learning each file's
repeating shapes (gated by its own flags, not the bank's: measured better). The per-row
anomaly score is the higher of the two scores (both in threshold units) turned into
evidence (:class:`Surprise`) and then into one event per incident (:class:`HoldOff`).
Every file gets the same defaults; nothing reads the labels before scoring. A windowed
Gaussian (NAB's baseline: ``|z|`` of the value over its trailing window) runs in the same
process as a peer.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from millstream.bench.nab_data import NabFile, default_nab_path, load_files, load_profiles
from millstream.bench.nab_score import score_profile
from streams.detectors.bank import TagBank
from streams.detectors.base import F64
from streams.detectors.pattern import KnnDetector
from streams.detectors.surprise import HoldOff, Surprise

__all__ = ["Stepper", "millstream_stepper", "run", "run_files", "windowed_gaussian_stepper"]

logger = logging.getLogger(__name__)

Stepper = Callable[[F64], F64]  # one row of values in, one row of anomaly scores out


def millstream_stepper(columns: list[str]) -> Stepper:
    """The streaming detector as the worker will run it, with the bench's defaults."""
    bank = TagBank()
    bank.add_columns(columns)
    knn = KnnDetector()
    knn.add_columns(columns)
    surprise = Surprise()
    hold = HoldOff()

    def step(x: F64) -> F64:
        pattern = knn.score_many(x)
        knn.learn_many(x)
        return hold.apply(surprise.update(np.fmax(bank.step(x).score, pattern)))
    return step


def windowed_gaussian_stepper(columns: list[str], window: int = 6400) -> Stepper:
    """NAB's windowed Gaussian: ``|x - mean| / std`` over the trailing ``window`` values."""
    n = len(columns)
    buf = np.full((window, n), np.nan)
    total, total2, count = np.zeros(n), np.zeros(n), np.zeros(n)
    pos = [0]

    def step(x: F64) -> F64:
        with np.errstate(all="ignore"):
            mean = total / count
            std = np.sqrt(np.maximum(total2 / count - mean * mean, 0.0))
            z = np.where(count >= 2, np.abs(x - mean) / np.maximum(std, 1e-12), 0.0)
        ok = np.isfinite(x)
        old = buf[pos[0]]
        gone = np.isfinite(old) & ok
        total[:] += np.where(ok, x, 0.0) - np.where(gone, old, 0.0)
        total2[:] += np.where(ok, x * x, 0.0) - np.where(gone, old * old, 0.0)
        count[:] += ok.astype(float) - gone.astype(float)
        buf[pos[0]] = np.where(ok, x, old)
        pos[0] = (pos[0] + 1) % window
        return np.nan_to_num(z, nan=0.0, posinf=0.0)
    return step


def stream(files: list[NabFile], make: Callable[[list[str]], Stepper]) -> list[F64]:
    """Feed the files' values as columns, one step at a time; per-file score arrays."""
    columns = [f.key for f in files]
    length = max(len(f.values) for f in files)
    x = np.full((length, len(files)), np.nan)
    for j, f in enumerate(files):
        x[:len(f.values), j] = f.values
    out = np.zeros_like(x)
    step = make(columns)
    for t in range(length):
        out[t] = step(x[t])
        if t % 5000 == 0:
            print(f"nab: step {t}/{length}", file=sys.stderr, flush=True)
    return [out[:len(f.values), j] for j, f in enumerate(files)]


def run_files(root: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Score the detectors on the files of ``root`` (all, or ``only``); the JSON result."""
    files = load_files(root, only)
    profiles = load_profiles(root)
    labels = [f.labels for f in files]
    result: dict[str, Any] = {}
    peers: dict[str, Callable[[list[str]], Stepper]] = {
        "windowed_gaussian": windowed_gaussian_stepper}
    for name, make in [("millstream", millstream_stepper), *peers.items()]:
        t0 = time.perf_counter()
        scores = stream(files, make)
        took = time.perf_counter() - t0
        figures = {p.name: score_profile(labels, scores, p) for p in profiles}
        for p, s in figures.items():
            print(f"nab: {name} {p}: {s.score:.1f} (threshold {s.threshold:.3g}, "
                  f"tp {s.tp} fp {s.fp} fn {s.fn})", file=sys.stderr, flush=True)
        if name == "millstream":
            result.update({p: round(s.score, 2) for p, s in figures.items()})
            result["seconds"] = round(took, 1)
        else:
            result[name] = {p: round(s.score, 2) for p, s in figures.items()}
    result["files"] = len(files)
    return result


def run(data: str | None) -> dict[str, Any]:
    """The ``bench nab`` entry point: ``data`` is the NAB directory (default: shared)."""
    return run_files(Path(data) if data else default_nab_path())
