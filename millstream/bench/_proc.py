"""The benchmark's helper processes: JSON lines in and out, and what /proc says about them.

A helper (a test server, a bare client) prints one JSON object per line on stdout
(``{"event": "ready", ...}``), reads commands the same way on stdin, logs to a file, and
exits when its stdin closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from millstream.bench.broker import progress
from millstream.stack.processes import terminate
from schemas.exceptions import MillstreamError

__all__ = ["LineChild", "cpu_seconds", "own_cpu_seconds", "peak_rss_mb", "say", "send_line"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()  # imported when the benchmark starts


def say(msg: str) -> None:
    """A progress line on stderr, with the seconds since the benchmark started."""
    progress(f"[{time.monotonic() - _T0:6.1f}s] {msg}")


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM) in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    t = os.times()
    return t.user + t.system


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def send_line(out: IO[str], **doc: Any) -> None:
    """One JSON line on a helper's stdout (what :class:`LineChild` reads)."""
    out.write(json.dumps(doc) + "\n")
    out.flush()


class LineChild:
    """``python -m MODULE ARGS`` speaking JSON lines.

    Lifecycle: ``start()``; ``expect(event)`` waits for a line with that event; ``send()``
    writes a command; ``stop()`` closes stdin, then SIGTERM, then kills its session.
    """

    def __init__(self, name: str, module: str, args: list[str], log: Path) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def start(self) -> None:
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, start_new_session=True,  # Ctrl-C reaches the benchmark, which stops us
            )
        threading.Thread(target=self._read, name=f"{self.name}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                self._lines.put(doc)
        self._lines.put(None)  # end of output: the process is ending

    def send(self, **cmd: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._died(f"could not send {cmd}") from exc

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next line whose ``event`` is ``event``; MillstreamError if the helper ends
        or stays silent for ``timeout`` seconds."""
        doc = self.poll(event, timeout)
        if doc is None:
            raise MillstreamError(
                f"benchmark helper {self.name} did not report {event!r} within "
                f"{timeout:.0f}s; see its log {self.log}:\n{self.tail()}")
        return doc

    def poll(self, event: str, timeout: float) -> dict[str, Any] | None:
        """The next line whose ``event`` is ``event``, or None after ``timeout`` seconds;
        MillstreamError if the helper ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                doc = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return None
            if doc is None:
                self._lines.put(None)
                raise self._died(f"waiting for {event!r}")
            if doc.get("event") == event:
                return doc

    def _died(self, doing: str) -> MillstreamError:
        code = None if self.proc is None else self.proc.wait(5)
        return MillstreamError(f"benchmark helper {self.name} ended (exit {code}) while "
                               f"{doing}; see its log {self.log}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(min(timeout, 3.0))
        return terminate(self.proc, timeout)  # type: ignore[arg-type]
