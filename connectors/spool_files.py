"""The spool's folder on start and in the background: recovery, locking, and fsync.

:func:`recover_segments` checks every segment a previous run left (a connector may have
been killed mid-write): the readable part of each stays for replay, the rest is moved to
``NAME.seg.corrupt`` beside it and reported, never silently dropped. :class:`Syncer` is
the thread that fsyncs on the spool's schedule, so the event loop never waits on a disk.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.exceptions import SpoolError
from connectors.spool_segment import MAGIC, SEGMENT_SUFFIX, scan_segment

__all__ = ["Recovered", "Syncer", "lock_folder", "recover_segments"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovered:
    """One segment a previous run left, as far as it is readable."""

    segment: int
    path: Path
    bytes: int
    records: int
    readings: int


def lock_folder(folder: Path) -> int:
    """An exclusive lock on the spool folder (released when the process dies); its fd."""
    path = folder / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = path.read_text().strip() or "?"
        os.close(fd)
        raise SpoolError(
            f"the spool folder {folder} is in use by another connector (pid {holder}); "
            "run one connector per source, or give this one its own MILLSTREAM_SPOOL_DIR"
        ) from exc
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _aside(path: Path) -> Path:
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{n}.corrupt")
        n += 1
    return target


def _move_tail_aside(path: Path, start: int) -> Path:
    """Copy bytes ``start..`` of ``path`` to a ``.corrupt`` file beside it, then cut them."""
    target = _aside(path)
    if start <= 0:
        os.replace(path, target)
        return target
    with path.open("rb") as src, target.open("wb") as dst:
        src.seek(start)
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.truncate(path, start)
    return target


def recover_segments(folder: Path) -> tuple[list[Recovered], list[dict[str, Any]]]:
    """The readable segments in ``folder`` in order, and a report per corrupt one."""
    found: list[tuple[int, Path]] = []
    for path in folder.glob(f"*{SEGMENT_SUFFIX}"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            logger.warning("ignoring %s in the spool folder: not a segment name", path)
    segments: list[Recovered] = []
    reports: list[dict[str, Any]] = []
    for segment, path in sorted(found):
        scan = scan_segment(path, segment)
        if scan.error is not None:
            keep = scan.good_bytes if scan.good_bytes >= len(MAGIC) else 0
            target = _move_tail_aside(path, keep)
            report = {"segment": path.name, "kept_aside": target.name,
                      "bytes": scan.file_bytes - keep, "readable_records": scan.records,
                      "reason": scan.error}
            reports.append(report)
            logger.error(
                "spool segment %s is corrupt: %s; its %d readable record(s) will be replayed, "
                "the other %d byte(s) are kept in %s for inspection",
                path, scan.error, scan.records, report["bytes"], target)
            if keep == 0:
                continue
        if scan.records == 0:
            path.unlink()
            continue
        segments.append(Recovered(segment, path, scan.good_bytes, scan.records, scan.readings))
    return segments, reports


class Syncer(threading.Thread):
    """fsyncs the spool every ``period_s``: the active segment, segments closed since the
    last round (then closes their fds), and the folder when files came or went.

    The spool hands it work under :attr:`lock`; the fsync calls run without it.
    """

    def __init__(self, folder: Path, period_s: float) -> None:
        super().__init__(name=f"spool-fsync-{folder.name}", daemon=True)
        self.folder = folder
        self.period_s = period_s
        self.lock = threading.Lock()
        self.active_fd = -1  # the segment being written (the spool owns this fd)
        self.closed_fds: list[int] = []  # sealed segments (fds owned by the syncer)
        self.folder_dirty = False
        self.rounds = 0
        self.seconds = 0.0  # time spent in fsync, for the status
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.sync_now()

    def sync_now(self) -> None:
        """One round, in the calling thread."""
        with self.lock:
            fds = self.closed_fds
            self.closed_fds = []
            active = os.dup(self.active_fd) if self.active_fd >= 0 else -1
            folder, self.folder_dirty = self.folder_dirty, False
        t0 = time.perf_counter()
        try:
            for fd in fds:
                _fsync_close(fd)
            if active >= 0:
                _fsync_close(active)
            if folder:
                _fsync_close(os.open(self.folder, os.O_RDONLY))
        finally:
            self.seconds += time.perf_counter() - t0
            self.rounds += 1

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()
        self.sync_now()


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:  # a full or failing disk: say so, keep the connector running
        logger.error("fsync of the spool failed: %s; a power cut may lose recent frames", exc)
    finally:
        os.close(fd)
