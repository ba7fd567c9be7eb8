"""The disk spool without Kafka: segment format, recovery of corrupt files, order, bounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.exceptions import SpoolError
from connectors.spool import Spool, SpoolConfig, SpoolPolicy
from connectors.spool_segment import (
    MAGIC,
    SegmentWriter,
    encode_record,
    iter_records,
    scan_segment,
)
from schemas.readings import FrameBuilder


def frame_bytes(seq: int, count: int = 10, epoch: int = 7) -> tuple[int, int, int, bytes, bytes]:
    b = FrameBuilder("src", epoch, next_seq=seq)
    for i in range(count):
        b.add(f"a/t{i % 3}", 1_700_000_000_000 + seq + i, float(seq + i))
    f = b.flush()
    assert f is not None
    return f.epoch, f.seq, len(f), f.key(), f.encode()


def fill(spool: Spool, frames: int, *, start: int = 1, count: int = 10, epoch: int = 7
         ) -> list[int]:
    """Append ``frames`` frames; the first seq of each that the spool took."""
    taken = []
    seq = start
    for _ in range(frames):
        e, s, n, key, payload = frame_bytes(seq, count, epoch)
        if spool.append(1000 + s, e, s, n, key, payload):
            taken.append(s)
        seq += count
    return taken


def drain(spool: Spool, settle: bool = True) -> list[int]:
    seqs = []
    while (rec := spool.next_record()) is not None:
        seqs.append(rec.seq)
        if settle:
            spool.settle(rec)
    return seqs


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


def test_segment_round_trip_and_scan(tmp_path: Path) -> None:
    path = tmp_path / "1.seg"
    w = SegmentWriter(path, 1)
    offsets = [w.append(encode_record(5, 9, s, 3, b"k", b"payload-%d" % s)) for s in (1, 4, 7)]
    w.close()
    recs = list(iter_records(path, 1))
    assert [r.offset for r in recs] == offsets and offsets[0] == len(MAGIC)
    assert [(r.seq, r.last_seq, r.epoch, r.key, r.payload) for r in recs] == [
        (s, s + 2, 9, b"k", b"payload-%d" % s) for s in (1, 4, 7)]
    scan = scan_segment(path, 1)
    assert (scan.records, scan.readings, scan.error) == (3, 9, None)
    assert scan.good_bytes == scan.file_bytes == path.stat().st_size


def test_replay_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path, max_bytes=1 << 20, segment_bytes=4096, fsync_ms=0)
    spool = Spool(config)
    first = fill(spool, 30)
    half = [spool.next_record() for _ in range(10)]  # handed out, never confirmed
    assert [r.seq for r in half if r] == first[:10]
    spool.close()
    assert len(segments(tmp_path)) > 2  # rolled at the segment size
    spool = Spool(config)  # a restart: everything unconfirmed comes back, first, in order
    assert spool.counters.records == 30 and spool.counters.readings == 300
    more = fill(spool, 5, start=10_001, epoch=8)
    assert drain(spool) == first + more
    assert spool.counters.records == 0
    spool.close()
    assert segments(tmp_path) == []  # every segment confirmed: all deleted


def test_truncated_tail_is_replayed_up_to_the_cut_and_kept_aside(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path, fsync_ms=0)
    spool = Spool(config)
    taken = fill(spool, 5)
    spool.close()
    (seg,) = segments(tmp_path)
    size = seg.stat().st_size
    os.truncate(seg, size - 7)  # a write cut short by a crash
    spool = Spool(config)
    (report,) = spool.counters.corrupt
    assert "truncated" in report["reason"] and report["readable_records"] == 4
    aside = tmp_path / report["kept_aside"]
    assert aside.exists() and aside.stat().st_size == report["bytes"] > 0
    assert seg.stat().st_size + report["bytes"] == size - 7  # nothing silently dropped
    assert drain(spool) == taken[:4]
    assert spool.status()["corrupt"] == [report]
    spool.close()
    assert aside.exists()  # kept for a person to look at


def test_bad_checksum_stops_the_replay_there_and_reports_it(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path, fsync_ms=0)
    spool = Spool(config)
    taken = fill(spool, 6)
    spool.close()
    (seg,) = segments(tmp_path)
    third = list(iter_records(seg, int(seg.stem)))[2]
    with seg.open("r+b") as f:  # one flipped bit in the third record's payload
        f.seek(third.offset + third.size - 5)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    spool = Spool(config)
    (report,) = spool.counters.corrupt
    assert "checksum" in report["reason"] and report["readable_records"] == 2
    assert drain(spool) == taken[:2]
    aside = (tmp_path / report["kept_aside"]).read_bytes()
    assert len(aside) == report["bytes"] and aside[:8] == encode_record(
        third.written_ms, third.epoch, third.seq, third.count, third.key, third.payload)[:8]
    spool.close()


def test_a_file_that_is_not_a_segment_is_moved_aside_whole(tmp_path: Path) -> None:
    (tmp_path / f"{1:016d}.seg").write_bytes(b"garbage, not a spool segment")
    spool = Spool(SpoolConfig(tmp_path, fsync_ms=0))
    (report,) = spool.counters.corrupt
    assert report["readable_records"] == 0 and report["bytes"] == 28
    assert (tmp_path / report["kept_aside"]).read_bytes().startswith(b"garbage")
    assert drain(spool) == []
    spool.close()


def test_drop_oldest_keeps_the_size_bound_and_reports_exactly_what_it_dropped(
        tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path, max_bytes=64 * 1024, segment_bytes=8192, fsync_ms=0)
    spool = Spool(config)
    taken = fill(spool, 3)
    inflight = [spool.next_record() for _ in range(3)]  # handed to Kafka: not dropped
    taken += fill(spool, 400, start=31)
    assert len(taken) == 403  # drop-oldest never refuses
    assert spool.bytes <= config.max_bytes
    assert sum(p.stat().st_size for p in segments(tmp_path)) == spool.bytes
    dropped = spool.take_dropped()
    assert dropped, "the spool should have overflowed"
    dropped_seqs = {s for d in dropped for s in range(d.first_seq, d.last_seq + 1)}
    assert sum(d.count for d in dropped) == len(dropped_seqs) == spool.counters.dropped_readings
    assert all(set(d.tags) == {"a/t0", "a/t1", "a/t2"} for d in dropped)
    assert [d.epoch for d in dropped] == [7] * len(dropped)
    for rec in inflight:
        assert rec is not None
        spool.settle(rec)
    kept = drain(spool)
    kept_seqs = {s + i for s in kept for i in range(10)}
    sent = {r.seq + i for r in inflight if r for i in range(10)}
    everything = set(range(1, 4031))
    assert sent.isdisjoint(dropped_seqs) and kept_seqs.isdisjoint(dropped_seqs)
    assert sent | kept_seqs | dropped_seqs == everything  # every reading accounted for once
    assert spool.counters.records == 0 and spool.counters.readings == 0
    spool.close()


def test_block_refuses_frames_when_full_until_kafka_confirms(tmp_path: Path) -> None:
    config = SpoolConfig(tmp_path, max_bytes=32 * 1024, segment_bytes=4096,
                         policy=SpoolPolicy.BLOCK, fsync_ms=0)
    spool = Spool(config)
    taken = fill(spool, 200)
    assert 0 < len(taken) < 200
    assert spool.bytes <= config.max_bytes and spool.take_dropped() == []
    assert fill(spool, 1, start=90_001) == []
    got = drain(spool)  # Kafka confirms everything: sealed segments go, room again
    assert got == taken
    assert fill(spool, 1, start=90_001) == [90_001]
    spool.close()


def test_one_process_per_spool_folder(tmp_path: Path) -> None:
    spool = Spool(SpoolConfig(tmp_path, fsync_ms=0))
    with pytest.raises(SpoolError, match="in use by another connector"):
        Spool(SpoolConfig(tmp_path, fsync_ms=0))
    spool.close()
    Spool(SpoolConfig(tmp_path, fsync_ms=0)).close()


def test_what_was_spooled_survives_sigkill_without_fsync(tmp_path: Path) -> None:
    """Records are in the page cache once append() returns: a killed process loses none."""
    code = (
        "import os, signal, sys\n"
        "from connectors.spool import Spool, SpoolConfig\n"
        "from tests.unit.test_connectors_spool import fill\n"
        f"s = Spool(SpoolConfig(__import__('pathlib').Path({str(tmp_path)!r}), fsync_ms=60000))\n"
        "fill(s, 50)\n"
        "print('spooled', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60)
    assert proc.returncode == -signal.SIGKILL and "spooled" in proc.stdout, proc.stderr
    spool = Spool(SpoolConfig(tmp_path, fsync_ms=0))
    assert spool.counters.corrupt == []
    assert drain(spool) == list(range(1, 501, 10))
    spool.close()


def test_fsync_thread_syncs_on_its_schedule(tmp_path: Path) -> None:
    spool = Spool(SpoolConfig(tmp_path, fsync_ms=20, segment_bytes=4096))
    fill(spool, 100)
    spool.close()  # the final round runs on close
    status = spool.status()
    assert status["fsync_rounds"] >= 1 and status["fsync_seconds"] >= 0



def test_a_frame_larger_than_a_segment_gets_one_of_its_own(tmp_path: Path) -> None:
    spool = Spool(SpoolConfig(tmp_path, max_bytes=64 * 1024, segment_bytes=4096, fsync_ms=0))
    taken = fill(spool, 3, count=200)  # ~5 KB frames in 4 KB segments
    assert len(segments(tmp_path)) == 3 and drain(spool) == taken
    with pytest.raises(SpoolError, match="too large for a spool"):
        fill(spool, 1, count=4000)
    spool.close()
