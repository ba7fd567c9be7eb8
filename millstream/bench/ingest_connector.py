"""The connector under test in ``millstream bench ingest``: ``millstream connect SOURCE``.

Run as its own process, exactly as deployed: configured by MILLSTREAM_* variables (the
benchmark's catalog, the benchmark's Kafka and topic prefix), default frame settings,
counters in a status file. The benchmark reads its status, CPU time and peak RSS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from millstream.bench._proc import cpu_seconds, peak_rss_mb, say
from millstream.stack.processes import Child
from schemas.exceptions import MillstreamError
from schemas.status import read_status

__all__ = ["PROFILE_ENV", "ConnectorUnderTest"]

# set (to anything) to run the connector under cProfile; its profile lands in the run folder
PROFILE_ENV = "MILLSTREAM_BENCH_PROFILE"


class ConnectorUnderTest:
    """``start()``, ``wait_for(what, predicate)``, ``usage()``, ``stop()`` -> final status."""

    def __init__(self, source: str, work: Path, env: dict[str, str]) -> None:
        self.source = source
        self.status_file = work / f"{source}.status.json"
        self.child = Child(f"connector-{source}",
                           ["connect", source, "--status-file", str(self.status_file)],
                           env, work / f"{source}.connector.log")
        if os.environ.get(PROFILE_ENV):  # a profile of where the connector's time goes
            self.child.argv[1:2] = ["-m", "cProfile", "-o", str(work / f"{source}.prof"), "-m"]

    @property
    def pid(self) -> int:
        assert self.child.proc is not None
        return self.child.proc.pid

    def start(self) -> None:
        self.child.start()

    def status(self) -> dict[str, Any]:
        return read_status(self.status_file) or {}

    def produced(self) -> int:
        return int(self.status().get("produced") or 0)

    def wait_for(self, what: str, done: Callable[[dict[str, Any]], bool],
                 timeout: float) -> float:
        """Poll the status file until ``done(status)``; seconds waited. MillstreamError
        naming ``what`` and the log's tail if the connector exits or time runs out."""
        t0 = time.monotonic()
        shown = t0
        while not done(self.status()):
            if not self.child.alive:
                raise MillstreamError(
                    f"the connector for {self.source} exited (code {self.child.returncode}) "
                    f"while {what}; its log {self.child.log} ends:\n{self.child.tail()}")
            if time.monotonic() - t0 > timeout:
                raise MillstreamError(
                    f"the connector for {self.source} was still {what} after {timeout:.0f}s "
                    f"(status {self.status()}); its log {self.child.log} ends:\n"
                    f"{self.child.tail()}")
            if time.monotonic() - shown >= 10:
                shown = time.monotonic()
                say(f"  connector {what}: {time.monotonic() - t0:.0f}s, "
                         f"{self.produced():,} readings so far")
            time.sleep(0.2)
        return time.monotonic() - t0

    def settle(self, target: int, quiet_s: float, timeout: float) -> float:
        """Wait until ``produced`` reaches ``target`` or stops growing for ``quiet_s``."""
        t0 = last_change = time.monotonic()
        last = self.produced()
        while last < target and time.monotonic() - last_change < quiet_s:
            if time.monotonic() - t0 > timeout or not self.child.alive:
                break
            time.sleep(0.25)
            now = self.produced()
            if now != last:
                last, last_change = now, time.monotonic()
        return time.monotonic() - t0

    def usage(self) -> dict[str, float | None]:
        """Peak RSS (MiB) and CPU seconds so far, while the process lives."""
        return {"peak_rss_mb": peak_rss_mb(self.pid), "cpu_s": cpu_seconds(self.pid)}

    def stop(self) -> dict[str, Any]:
        """SIGTERM (the connector flushes and writes its final status); the final status."""
        code = self.child.stop(timeout=30)
        if code not in (0, None, -15):
            say(f"  connector {self.source} exited with code {code}; see {self.child.log}")
        return self.status()
