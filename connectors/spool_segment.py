"""The spool's file format: append-only segment files of checksummed frame records.

A segment starts with the 8-byte magic ``MSSPOOL1``; then records, each::

    length u32 | crc32 u32 | written_ms i64 | epoch i64 | seq i64 | count u32 | key_len u16
    | key | payload

little-endian, where ``length`` counts everything after the crc and the crc (zlib CRC-32)
covers the same bytes. ``payload`` is the encoded frame as it goes to Kafka, so a replay
sends bytes without decoding them. A reader stops at the first record that is cut short
or fails its checksum: :func:`scan_segment` says where the readable part ends and why.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAGIC",
    "MAX_RECORD_BYTES",
    "SEGMENT_SUFFIX",
    "Scan",
    "SegmentWriter",
    "SpoolRecord",
    "encode_record",
    "iter_records",
    "read_record",
    "scan_segment",
    "segment_name",
]

logger = logging.getLogger(__name__)

MAGIC = b"MSSPOOL1"
SEGMENT_SUFFIX = ".seg"
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a length above this is garbage, not a frame
_PREFIX = struct.Struct("<II")  # length, crc
_META = struct.Struct("<qqqIH")  # written_ms, epoch, seq, count, key_len


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One frame as stored: where it is, what it numbers, and the bytes Kafka gets."""

    segment: int  # segment id (its file name)
    offset: int  # byte offset of the record in the segment
    size: int  # bytes on disk, header included
    written_ms: int  # when it was spooled, Unix ms
    epoch: int
    seq: int  # first sequence number of the frame
    count: int  # readings in the frame
    key: bytes
    payload: bytes

    @property
    def last_seq(self) -> int:
        return self.seq + self.count - 1


@dataclass(frozen=True, slots=True)
class Scan:
    """What a segment holds: its readable records and, if any, why the rest is not."""

    records: int
    readings: int
    good_bytes: int  # the readable part ends here
    file_bytes: int
    error: str | None  # None when the whole file is readable
    first_written_ms: int | None


def segment_name(segment: int) -> str:
    return f"{segment:016d}{SEGMENT_SUFFIX}"


def encode_record(written_ms: int, epoch: int, seq: int, count: int, key: bytes,
                  payload: bytes) -> bytes:
    """The bytes of one record (header, key, payload)."""
    body = _META.pack(written_ms, epoch, seq, count, len(key)) + key + payload
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


class SegmentWriter:
    """Appends records to one new segment file with unbuffered writes.

    Every ``append`` is one ``write(2)``, so a record is in the page cache (and survives
    the process being killed) when ``append`` returns; ``sync()`` makes it survive a power
    cut. Lifecycle: construct (creates the file), ``append`` ..., ``close``.
    """

    def __init__(self, path: Path, segment: int) -> None:
        self.path = path
        self.segment = segment
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.size = 0
        self._write(MAGIC)

    @property
    def fd(self) -> int:
        return self._fd

    def append(self, record: bytes) -> int:
        """Write one encoded record; its offset in the file."""
        offset = self.size
        self._write(record)
        return offset

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)


def read_record(fd: int, segment: int, offset: int, end: int) -> SpoolRecord | str | None:
    """The record at ``offset`` of an open segment; None at ``end``; else a sentence
    saying why the bytes there are not a record (cut short, bad checksum)."""
    if offset >= end:
        return None
    prefix = os.pread(fd, _PREFIX.size, offset)
    if len(prefix) < _PREFIX.size or offset + _PREFIX.size > end:
        return f"a record header cut short at byte {offset} (truncated tail)"
    length, crc = _PREFIX.unpack(prefix)
    if length < _META.size or length > MAX_RECORD_BYTES:
        return f"a record length of {length} bytes at byte {offset} is impossible"
    body = os.pread(fd, length, offset + _PREFIX.size)
    if len(body) < length or offset + _PREFIX.size + length > end:
        return (f"a record of {length} bytes at byte {offset} is cut short after "
                f"{len(body)} (truncated tail)")
    if zlib.crc32(body) != crc:
        return f"the record at byte {offset} fails its checksum"
    written_ms, epoch, seq, count, key_len = _META.unpack_from(body)
    key_end = _META.size + key_len
    if key_end > length:
        return f"the record at byte {offset} has a key longer than itself"
    return SpoolRecord(segment, offset, _PREFIX.size + length, written_ms, epoch, seq, count,
                       bytes(body[_META.size:key_end]), bytes(body[key_end:]))


def iter_records(path: Path, segment: int, start: int = len(MAGIC),
                 end: int | None = None) -> Iterator[SpoolRecord]:
    """The readable records of a segment from byte ``start``, in order; stops at the
    first unreadable one (use :func:`scan_segment` to learn why)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        stop = os.fstat(fd).st_size if end is None else end
        offset = start
        while True:
            rec = read_record(fd, segment, offset, stop)
            if not isinstance(rec, SpoolRecord):
                return
            yield rec
            offset += rec.size
    finally:
        os.close(fd)


def scan_segment(path: Path, segment: int) -> Scan:
    """Read a whole segment and check every record, as a connector does on start."""
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(len(MAGIC))
    if magic != MAGIC:
        why = ("the file is shorter than its header" if len(magic) < len(MAGIC)
               and MAGIC.startswith(magic) else f"the file does not start with {MAGIC!r}")
        return Scan(0, 0, 0, size, why, None)
    records = readings = 0
    first: int | None = None
    offset = len(MAGIC)
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            rec = read_record(fd, segment, offset, size)
            if rec is None:
                return Scan(records, readings, offset, size, None, first)
            if isinstance(rec, str):
                return Scan(records, readings, offset, size, rec, first)
            records += 1
            readings += rec.count
            first = rec.written_ms if first is None else first
            offset += rec.size
    finally:
        os.close(fd)
