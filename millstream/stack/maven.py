"""Running Maven with a progress line: what has been downloaded so far, on stderr.

Maven in batch mode logs one ``Downloaded from REPO: URL (SIZE at SPEED)`` line per file
it fetches; :func:`run_maven` counts them and their sizes and shows the running total
(at most every ``every`` seconds), so a first fetch of a few hundred files does not look
hung. Its output's tail is kept for the error message when Maven fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import deque
from typing import TextIO

__all__ = ["MavenRun", "downloaded_bytes", "run_maven"]

_DOWNLOADED = re.compile(r"Downloaded from \S+: \S+ \((\d+(?:\.\d+)?) (B|kB|MB|GB) at ")
_UNIT = {"B": 1, "kB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}


def downloaded_bytes(line: str) -> int | None:
    """The size of the file a Maven ``Downloaded from`` line reports; None for others."""
    m = _DOWNLOADED.search(line)
    return None if m is None else round(float(m.group(1)) * _UNIT[m.group(2)])


class MavenRun:
    """What one Maven run did: its exit code, the files and bytes it downloaded, and the
    last lines it printed."""

    def __init__(self) -> None:
        self.returncode = 0
        self.files = 0
        self.bytes = 0
        self.tail: deque[str] = deque(maxlen=40)

    def take(self, line: str) -> bool:
        """Count one line of Maven's output; True if it reported a download."""
        self.tail.append(line.rstrip())
        size = downloaded_bytes(line)
        if size is None:
            return False
        self.files += 1
        self.bytes += size
        return True

    def summary(self) -> str:
        return f"{self.files} files ({self.bytes / 1e6:.1f} MB) downloaded"


def run_maven(argv: list[str], what: str, *, out: TextIO | None = None,
              every: float = 2.0) -> MavenRun:
    """Run ``argv`` (mvn -B ..., not -q), showing ``what: N files (M MB) downloaded, T s``
    on ``out`` (stderr) as it goes."""
    out = sys.stderr if out is None else out
    run, started, shown = MavenRun(), time.monotonic(), 0.0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            if run.take(line) and now - shown >= every:
                shown = now
                print(f"millstream: {what}: {run.summary()}, {now - started:.0f} s",
                      file=out, flush=True)
        run.returncode = proc.wait()
    return run
