"""Quix Streams, the peer of ``bench streams``, in a virtualenv of its own.

quixstreams 3.28 requires confluent-kafka < 2.13 and pydantic < 2.14; millstream needs
confluent-kafka >= 2.16 and a newer pydantic, so the two cannot share an environment.
:func:`quix_python` creates ``<cache>/quix-venv`` once (``pip install`` from the package
index, a minute or two), reuses it afterwards, and rebuilds it when the pinned
requirements change. :func:`run_quix` runs :mod:`millstream.bench._quix_app` with that
Python as a child process, watched like the benchmark's other workers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from millstream.bench.broker import progress
from millstream.bench.faust_runner import run_child
from millstream.bench.raw import Run
from schemas.exceptions import MillstreamError

__all__ = ["QUIX_REQUIREMENTS", "quix_python", "run_quix"]

logger = logging.getLogger(__name__)

QUIX_REQUIREMENTS = ("quixstreams==3.28.*", "confluent-kafka<2.13", "pydantic<2.14")
_MARKER = "millstream-requirements.json"
_APP = Path(__file__).with_name("_quix_app.py")


def quix_python(cache_dir: Path, timeout: float = 900.0) -> Path:
    """The Python of the Quix virtualenv under ``cache_dir``, created on first use."""
    venv = cache_dir / "quix-venv"
    python = venv / "bin" / "python"
    if _ready(venv):
        return python
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"quix-venv.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    progress(f"creating the Quix Streams virtualenv in {venv} (once; pip install "
             f"{' '.join(QUIX_REQUIREMENTS)}) ...")
    t0 = time.monotonic()
    try:
        _run([sys.executable, "-m", "venv", str(tmp)], "create the virtualenv", timeout)
        _run([str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", *QUIX_REQUIREMENTS],
             "install quixstreams", timeout)
        (tmp / _MARKER).write_text(json.dumps(list(QUIX_REQUIREMENTS)))
        if venv.exists():  # stale requirements (or another run finished first)
            if _ready(venv):
                shutil.rmtree(tmp, ignore_errors=True)
                return python
            shutil.rmtree(venv)
        tmp.rename(venv)  # bin/python and site-packages are found relative to the venv
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"Quix Streams virtualenv ready in {time.monotonic() - t0:.0f}s")
    return python


def _ready(venv: Path) -> bool:
    try:
        wanted = json.loads((venv / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return wanted == list(QUIX_REQUIREMENTS) and (venv / "bin" / "python").exists()


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise MillstreamError(f"could not {what} for the Quix Streams peer within "
                              f"{timeout:.0f}s ({' '.join(cmd)}); is the package index "
                              "reachable?") from exc
    if done.returncode != 0:
        raise MillstreamError(
            f"could not {what} for the Quix Streams peer ({' '.join(cmd)} exited "
            f"{done.returncode}): {(done.stderr or done.stdout)[-800:]}; check that pip "
            "can reach the package index, or delete the half-built virtualenv and retry")


def run_quix(python: Path, bootstrap: str, topic: str, mode: str, readings: int,
             output: str, group: str, seconds: float,
             timeout: float) -> tuple[Run, dict[str, Any]]:
    """Quix Streams over ``topic`` until ``readings`` rows went through its window, or
    ``seconds`` passed since the first."""
    cmd = [str(python), str(_APP), "--bootstrap", bootstrap, "--topic", topic,
           "--mode", mode, "--readings", str(readings), "--output", output,
           "--group", group, "--seconds", str(seconds)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return run_child(cmd, f"quix {mode}", start_timeout=120.0, timeout=timeout, env=env)
