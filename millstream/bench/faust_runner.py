"""Runs a benchmark's worker (a Faust agent, the streams worker, a peer) in a child process.

The child writes its progress to a JSON file (``--result FILE``: ``started``, ``readings``,
``messages``, ``seconds``, ``completed``, and whatever else it measures); this side bounds
its time (start-up and run separately), reads that progress, and always ends it (SIGTERM
to its process group, then SIGKILL): on success, timeout, error and Ctrl-C alike.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from millstream.bench.broker import progress
from millstream.bench.raw import Run
from millstream.stack.processes import terminate
from schemas.status import read_status

__all__ = ["run_child", "run_faust"]


def _read(path: Path) -> dict[str, object]:
    return read_status(path) or {}


def _tail(log: Path, n: int = 600) -> str:
    try:
        return log.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


def run_faust(bootstrap: str, topic: str, mode: str, target: int, *,
              catalog: Path | None = None, start_timeout: float = 60.0,
              timeout: float = 300.0) -> tuple[Run, dict[str, int] | None]:
    """Start the worker, wait for ``target`` readings; the run and processor counters."""
    cmd = [sys.executable, "-m", "millstream.bench._faust_consumer",
           "--bootstrap", bootstrap, "--topic", topic, "--mode", mode,
           "--readings", str(target)]
    if catalog is not None:
        cmd += ["--catalog", str(catalog)]
    run, doc = run_child(cmd, f"faust {mode}", start_timeout=start_timeout, timeout=timeout)
    counters = doc.get("processor")
    return run, counters if isinstance(counters, dict) else None


def run_child(cmd: list[str], label: str, *, start_timeout: float = 60.0,
              timeout: float = 300.0, env: dict[str, str] | None = None,
              ) -> tuple[Run, dict[str, Any]]:
    """Run ``cmd --result FILE`` (a helper writing its progress to FILE) until it reports
    completion, stops, or runs out of time; the run and the helper's last progress."""
    with tempfile.TemporaryDirectory(prefix="millstream-bench-child-") as tmp:
        result, log = Path(tmp) / "progress.json", Path(tmp) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*cmd, "--result", str(result)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
        note: str | None = None
        try:
            note = _wait(proc, result, label, start_timeout, timeout)
            if note is None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    progress(f"{label}: worker slow to shut down; ending it")
        finally:
            terminate(proc, 10.0)
        doc = _read(result)
        if note is not None:
            tail = _tail(log)
            progress(f"{label}: {note}; worker log ends:\n{tail}")
        raw_readings, raw_messages, raw_seconds = (doc.get("readings", 0), doc.get("messages", 0),
                                                   doc.get("seconds", 0.0))
        run = Run(int(raw_readings) if isinstance(raw_readings, int) else 0,
                  int(raw_messages) if isinstance(raw_messages, int) else 0,
                  float(raw_seconds) if isinstance(raw_seconds, int | float) else 0.0,
                  doc.get("completed") is True, note)
        return run, doc


def _wait(proc: subprocess.Popen[bytes], result: Path, label: str, start_timeout: float,
          timeout: float) -> str | None:
    """None when the worker handled its readings; else what went wrong."""
    t0 = shown = time.monotonic()
    started_at: float | None = None
    while True:
        time.sleep(0.2)
        doc = _read(result)
        if doc.get("completed") is True:
            return None
        now = time.monotonic()
        if started_at is None and doc.get("started") is True:
            started_at = now
            progress(f"{label}: worker up after {now - t0:.1f}s")
        if now - shown >= 10:
            shown = now
            progress(f"{label}: {doc.get('readings', 0)} readings so far")
        if proc.poll() is not None:
            return f"the worker exited with code {proc.returncode} before the last reading"
        if started_at is None and now - t0 > start_timeout:
            return f"the worker's agent did not start within {start_timeout:.0f}s"
        if started_at is not None and now - started_at > timeout:
            return (f"timed out after {timeout:.0f}s at {doc.get('readings', 0)} readings "
                    f"({doc.get('messages', 0)} messages)")
