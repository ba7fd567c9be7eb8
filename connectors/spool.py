"""A bounded store-and-forward queue of frames on disk: one per source.

Frames are appended to segment files (:mod:`connectors.spool_segment`), read back in order
through a cursor, and *settled* one by one once Kafka confirmed them; a segment file is
deleted when it is closed and every record in it is settled. On start, whatever a previous
run left is checked (:func:`~connectors.spool_files.recover_segments`) and replayed first.
When the spool is full, ``drop-oldest`` discards the oldest segment's unsent records and
reports them as :class:`DroppedRun` s; ``block`` refuses the frame until there is room.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from connectors.exceptions import SpoolError
from connectors.spool_files import Syncer, lock_folder, recover_segments
from connectors.spool_segment import (
    MAGIC,
    SegmentWriter,
    SpoolRecord,
    encode_record,
    iter_records,
    read_record,
    segment_name,
)

__all__ = ["DroppedRun", "Spool", "SpoolConfig", "SpoolPolicy"]

logger = logging.getLogger(__name__)

MIN_SEGMENTS = 4  # segments are at most max_bytes / 4, so dropping one frees a quarter


class SpoolPolicy(str, Enum):
    """What a full spool does with the next frame."""

    DROP_OLDEST = "drop-oldest"  # discard the oldest segment, report the gap
    BLOCK = "block"  # refuse the frame; the source stops reading its device


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Where a source's spool lives and how it behaves (settings ``MILLSTREAM_SPOOL_*``)."""

    folder: Path
    max_bytes: int = 1 << 30
    segment_bytes: int = 16 << 20
    policy: SpoolPolicy = SpoolPolicy.DROP_OLDEST
    fsync_ms: int = 1000  # 0: fsync every frame before publish() returns


@dataclass(frozen=True, slots=True)
class DroppedRun:
    """Readings a full spool discarded: seq ``first..last`` of one epoch, with the last
    timestamp of each tag among them (where the gap markers go)."""

    epoch: int
    first_seq: int
    last_seq: int
    count: int
    frames: int
    tags: dict[str, int]


@dataclass(slots=True)
class _Segment:
    id: int
    path: Path
    bytes: int
    records: int
    readings: int
    settled: int = 0
    sealed: bool = True


@dataclass(slots=True)
class _Counters:
    records: int = 0  # unsettled records (frames) in the spool
    readings: int = 0
    dropped_frames: int = 0
    dropped_readings: int = 0
    corrupt: list[dict[str, Any]] = field(default_factory=list)


class Spool:
    """One source's spool folder, owned by this process while open.

    Lifecycle: ``Spool(config)`` (locks the folder, recovers what is there, opens a new
    segment), ``append``/``next_record``/``settle`` from one thread, ``close()``.
    """

    def __init__(self, config: SpoolConfig) -> None:
        if config.max_bytes < 4 * 4096:
            raise SpoolError(f"MILLSTREAM_SPOOL_MAX_BYTES={config.max_bytes} is too small; "
                             "give the spool at least 16 KiB (the default is 1 GiB)")
        self.config = config
        self.folder = config.folder
        self.segment_bytes = max(4096, min(config.segment_bytes, config.max_bytes // MIN_SEGMENTS))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_folder(self.folder)
        except OSError as exc:
            raise SpoolError(f"cannot use the spool folder {self.folder}: {exc}; check that it "
                             "is writable, or set MILLSTREAM_SPOOL_DIR") from exc
        self.counters = _Counters()
        self._segments: dict[int, _Segment] = {}  # in id order (insertion order)
        recovered, self.counters.corrupt = recover_segments(self.folder)
        for r in recovered:
            self._segments[r.segment] = _Segment(r.segment, r.path, r.bytes, r.records,
                                                 r.readings)
            self.counters.records += r.records
            self.counters.readings += r.readings
        if recovered:
            logger.info("spool %s holds %d frame(s), %d reading(s) from a previous run: "
                        "replaying them first", self.folder, self.counters.records,
                        self.counters.readings)
        self.bytes = sum(s.bytes for s in self._segments.values())
        self._dropped: list[DroppedRun] = []
        self._syncer: Syncer | None = None
        if config.fsync_ms > 0:
            self._syncer = Syncer(self.folder, config.fsync_ms / 1000)
        self._writer = self._new_segment(max(self._segments, default=0) + 1)
        self._cursor = (next(iter(self._segments)), len(MAGIC))
        self._read_fd = (-1, -1)  # (segment id, fd)
        if self._syncer is not None:
            self._syncer.start()

    # -- writing -------------------------------------------------------------------------
    def append(self, written_ms: int, epoch: int, seq: int, count: int, key: bytes,
               payload: bytes) -> bool:
        """Spool one frame; False when the spool is full and the policy is ``block``."""
        record = encode_record(written_ms, epoch, seq, count, key, payload)
        if len(record) + len(MAGIC) > self.config.max_bytes // 2:
            raise SpoolError(f"a frame of {len(record)} bytes is too large for a spool of "
                             f"{self.config.max_bytes} bytes; raise MILLSTREAM_SPOOL_MAX_BYTES")
        if self._writer.size + len(record) > self.segment_bytes and self._active.records:
            self._roll()
        if self.bytes + len(record) > self.config.max_bytes and not self._make_room(len(record)):
            return False
        self._writer.append(record)
        seg = self._active
        seg.bytes, seg.records, seg.readings = self._writer.size, seg.records + 1, \
            seg.readings + count
        self.bytes += len(record)
        self.counters.records += 1
        self.counters.readings += count
        if self._syncer is None:
            self._writer.sync()
        return True

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.config.max_bytes

    # -- reading and settling -----------------------------------------------------------
    def next_record(self) -> SpoolRecord | None:
        """The next record to send, in order; None when every record was handed out."""
        while True:
            seg_id, offset = self._cursor
            seg = self._segments.get(seg_id)
            if seg is None:  # dropped or deleted under the cursor
                nxt = next((s for s in self._segments if s > seg_id), None)
                if nxt is None:
                    return None
                self._cursor = (nxt, len(MAGIC))
                continue
            end = self._writer.size if not seg.sealed else seg.bytes
            rec = read_record(self._fd_for(seg), seg_id, offset, end)
            if isinstance(rec, SpoolRecord):
                self._cursor = (seg_id, offset + rec.size)
                return rec
            if isinstance(rec, str):  # the file changed under us: never expected
                raise SpoolError(f"spool segment {seg.path} became unreadable: {rec}")
            if not seg.sealed:
                return None
            nxt = next((s for s in self._segments if s > seg_id), None)
            if nxt is None:
                return None
            self._cursor = (nxt, len(MAGIC))

    def peek_written_ms(self) -> int | None:
        """When the next record to send was spooled (None if there is none)."""
        seg_id, offset = self._cursor
        for seg in self._segments.values():
            if seg.id < seg_id:
                continue
            start = offset if seg.id == seg_id else len(MAGIC)
            end = self._writer.size if not seg.sealed else seg.bytes
            rec = read_record(self._fd_for(seg), seg.id, start, end)
            if isinstance(rec, SpoolRecord):
                return rec.written_ms
        return None

    def settle(self, record: SpoolRecord) -> None:
        """Kafka confirmed ``record`` (or it was given up on): its segment may go."""
        self.counters.records -= 1
        self.counters.readings -= record.count
        seg = self._segments.get(record.segment)
        if seg is None:
            return  # dropped while the record was in flight
        seg.settled += 1
        if seg.sealed and seg.settled >= seg.records:
            self._delete(seg)

    def take_dropped(self) -> list[DroppedRun]:
        dropped, self._dropped = self._dropped, []
        return dropped

    # -- state ----------------------------------------------------------------------------
    @property
    def segments(self) -> int:
        return len(self._segments)

    def status(self) -> dict[str, Any]:
        c = self.counters
        doc: dict[str, Any] = {
            "folder": str(self.folder), "policy": self.config.policy.value,
            "bytes": self.bytes, "max_bytes": self.config.max_bytes,
            "segments": len(self._segments), "frames": c.records, "readings": c.readings,
            "dropped_frames": c.dropped_frames, "dropped_readings": c.dropped_readings,
            "corrupt": c.corrupt, "fsync_ms": self.config.fsync_ms,
        }
        if self._syncer is not None:
            doc["fsync_rounds"] = self._syncer.rounds
            doc["fsync_seconds"] = round(self._syncer.seconds, 3)
        return doc

    def close(self) -> None:
        """Close the active segment (deleted if settled), fsync everything, unlock."""
        self._roll(open_next=False)
        self._close_read_fd()
        if self._syncer is not None:
            self._syncer.stop()
        os.close(self._lock_fd)

    # -- internals -----------------------------------------------------------------------
    @property
    def _active(self) -> _Segment:
        return self._segments[self._writer.segment]

    def _new_segment(self, seg_id: int) -> SegmentWriter:
        path = self.folder / segment_name(seg_id)
        writer = SegmentWriter(path, seg_id)
        self._segments[seg_id] = _Segment(seg_id, path, writer.size, 0, 0, sealed=False)
        self.bytes += writer.size
        if self._syncer is not None:
            with self._syncer.lock:
                self._syncer.active_fd = writer.fd
                self._syncer.folder_dirty = True
        return writer

    def _roll(self, open_next: bool = True) -> None:
        old = self._writer
        seg = self._segments.get(old.segment)
        if self._syncer is None:
            old.sync()
            old.close()
        else:
            with self._syncer.lock:  # the syncer fsyncs and closes it on its next round
                self._syncer.closed_fds.append(old.fd)
                self._syncer.active_fd = -1
        if open_next:
            self._writer = self._new_segment(old.segment + 1)
        if seg is not None:
            seg.sealed = True
            if seg.settled >= seg.records:
                self._delete(seg)

    def _delete(self, seg: _Segment) -> None:
        del self._segments[seg.id]
        self.bytes -= seg.bytes
        if self._read_fd[0] == seg.id:
            self._close_read_fd()
        seg.path.unlink(missing_ok=True)
        if self._syncer is not None:
            with self._syncer.lock:
                self._syncer.folder_dirty = True

    def _make_room(self, size: int) -> bool:
        if self.config.policy is SpoolPolicy.BLOCK:
            return False
        while self.bytes + size > self.config.max_bytes:
            oldest = next(iter(self._segments.values()))
            if not oldest.sealed:
                if not oldest.records:
                    return True  # nothing else to drop: the frame goes into an empty spool
                self._roll()
                continue
            self._drop(oldest)
        return True

    def _drop(self, seg: _Segment) -> None:
        """Discard a sealed segment; what was not handed out yet becomes DroppedRuns."""
        cur_id, cur_off = self._cursor
        start = cur_off if cur_id == seg.id else (seg.bytes if cur_id > seg.id else len(MAGIC))
        records = list(iter_records(seg.path, seg.id, start, seg.bytes))
        runs = list(_runs(records))
        frames = len(records)
        readings = sum(r.count for r in records)
        self.counters.records -= frames
        self.counters.readings -= readings
        self.counters.dropped_frames += frames
        self.counters.dropped_readings += readings
        self._dropped.extend(runs)
        for run in runs:
            logger.error("spool %s is full (%d bytes): dropped %d reading(s) in %d frame(s), "
                         "epoch %d seq %d..%d (policy drop-oldest)", self.folder,
                         self.config.max_bytes, run.count, run.frames, run.epoch,
                         run.first_seq, run.last_seq)
        seg.settled = seg.records  # nothing left in it to send
        if cur_id == seg.id:
            self._cursor = (cur_id + 1, len(MAGIC))
        self._delete(seg)

    def _fd_for(self, seg: _Segment) -> int:
        if self._read_fd[0] != seg.id:
            self._close_read_fd()
            self._read_fd = (seg.id, os.open(seg.path, os.O_RDONLY))
        return self._read_fd[1]

    def _close_read_fd(self) -> None:
        if self._read_fd[1] >= 0:
            os.close(self._read_fd[1])
        self._read_fd = (-1, -1)


def _runs(records: Iterable[SpoolRecord]) -> Iterable[DroppedRun]:
    """Group dropped records into contiguous runs of sequence numbers per epoch."""
    run: dict[str, Any] | None = None
    for rec in records:
        tags = _tags_of(rec)
        if run is not None and (rec.epoch != run["epoch"] or rec.seq != run["last"] + 1):
            yield DroppedRun(run["epoch"], run["first"], run["last"], run["count"],
                             run["frames"], run["tags"])
            run = None
        if run is None:
            run = {"epoch": rec.epoch, "first": rec.seq, "last": rec.seq - 1, "count": 0,
                   "frames": 0, "tags": {}}
        run["last"] = rec.last_seq
        run["count"] += rec.count
        run["frames"] += 1
        for tag, ts in tags.items():
            run["tags"][tag] = max(ts, run["tags"].get(tag, ts))
    if run is not None:
        yield DroppedRun(run["epoch"], run["first"], run["last"], run["count"], run["frames"],
                         run["tags"])


def _tags_of(rec: SpoolRecord) -> dict[str, int]:
    """Each tag of a spooled frame with its last timestamp (payloads are frames' JSON)."""
    try:
        doc = json.loads(rec.payload)
        last: dict[str, int] = {}
        for tag, ts in zip(doc["tag"], doc["ts"], strict=True):
            last[tag] = max(int(ts), last.get(tag, int(ts)))
        return last
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("a dropped spool record (epoch %d seq %d) does not decode (%s): "
                     "its gap is reported without tags", rec.epoch, rec.seq, exc)
        return {}
