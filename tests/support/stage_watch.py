"""Watches a demo run from the side, like Prometheus and an operator would.

Once every expected stage names its health endpoint in its status file and answers
``/readyz`` with 200, it scrapes each one, runs ``millstream status --json`` once, then
scrapes every couple of seconds until the stages go away, keeping each one's first and
last scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from schemas.status import read_status
from tests.support.scrape import Scrape, get, scrape

__all__ = ["StageWatch"]


class StageWatch(threading.Thread):
    """``names``: the status files' stems (``source-opcua-sim``, ``worker``, ...)."""

    def __init__(self, run_dir: Path, names: set[str], timeout: float = 150.0) -> None:
        super().__init__(name="stage-watch", daemon=True)
        self.run_dir, self.names, self.timeout = run_dir, names, timeout
        self.urls: dict[str, str] = {}
        self.ready: dict[str, tuple[int, Any]] = {}  # last /readyz answer while waiting
        self.alive: dict[str, int] = {}
        self.first: dict[str, Scrape] = {}
        self.last: dict[str, Scrape] = {}
        self.status: subprocess.CompletedProcess[str] | None = None
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # the test reports it
            self.problems.append(f"{type(exc).__name__}: {exc}")

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.urls) < len(self.names) and time.monotonic() < deadline:
            for name in self.names - set(self.urls):
                doc = read_status(self.run_dir / f"{name}.json")
                if doc and doc.get("metrics_url"):
                    self.urls[name] = str(doc["metrics_url"])
            time.sleep(0.5)
        if len(self.urls) < len(self.names):
            self.problems.append(f"no metrics_url from {sorted(self.names - set(self.urls))}")
            return
        while time.monotonic() < deadline:
            self.ready = {n: get(u + "/readyz") for n, u in self.urls.items()}
            if all(code == 200 for code, _ in self.ready.values()):
                break
            time.sleep(0.5)
        self.alive = {n: get(u + "/healthz")[0] for n, u in self.urls.items()}
        self.first = {n: scrape(u) for n, u in self.urls.items()}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.status = subprocess.run(
            [sys.executable, "-m", "millstream.cli", "status", "--json", "--run-dir",
             str(self.run_dir), "--interval", "2"],
            capture_output=True, text=True, env=env, timeout=60)
        left = dict(self.urls)
        while left and time.monotonic() < deadline:
            time.sleep(2.0)
            for name, url in list(left.items()):
                try:
                    self.last[name] = scrape(url)
                except OSError:  # the stage stopped: its last scrape stays
                    del left[name]

    def status_doc(self) -> dict[str, Any]:
        assert self.status is not None, self.problems
        assert self.status.returncode == 0, (self.status.stdout, self.status.stderr)
        doc: dict[str, Any] = json.loads(self.status.stdout)
        return doc
