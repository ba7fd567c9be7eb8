"""A 60 s database outage under ~2,000 readings/s: chDB's data directory lives on a small
tmpfs that is filled up (so every insert fails with NOT_ENOUGH_SPACE, for real), then
freed. The sink retries with backoff, stays paused without buffering more, resumes by
itself, and ends with lost = 0 and duplicated = 0, rollups included."""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from millstream.query import endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.readings import FrameBuilder
from schemas.status import read_status
from schemas.topics import Topics
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for

pytestmark = pytest.mark.integration

RATE = 2000  # readings/s, from two sources
FRAME = RATE // 20  # readings per frame: each source sends one frame per 100 ms
OUTAGE_S = 60.0
# the sink holds at most max_pending_rows plus one message's rows (sinks/base.py): less
# than the 120k that 60 s at 2,000/s would buffer unbounded, and than the backlog it
# catches up on afterwards (so the bound is reached and held then, too)
MAX_PENDING = 40_000
BOUND = MAX_PENDING + FRAME


class Plant(threading.Thread):
    """Produces RATE readings/s as frames of two sources until stopped; counts them."""

    def __init__(self, bootstrap: str, topic: str, catalog: Catalog) -> None:
        super().__init__(name="plant", daemon=True)
        self.topic, self.tags = topic, list(catalog.tags())
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.builders = [FrameBuilder(f"outage-{s}", epoch=7, max_readings=10_000)
                         for s in range(2)]
        self.stop = threading.Event()
        self.failed: list[str] = []

    def run(self) -> None:
        t0 = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            tick += 1
            now_ms = time.time_ns() // 1_000_000
            for b in self.builders:  # 100 ms of each source: RATE / 2 / 10 readings
                for i in range(FRAME):
                    b.add(self.tags[i % len(self.tags)], now_ms + i, float(tick % 50))
                f = b.flush()
                assert f is not None
                self.producer.produce(self.topic, f.encode(), f.key(),
                                      on_delivery=self._delivered)
            self.producer.poll(0)
            self.stop.wait(max(0.0, t0 + tick * 0.1 - time.monotonic()))
        if self.producer.flush(30):
            self.failed.append("frames not delivered")

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    @property
    def produced(self) -> int:
        return sum(b.produced for b in self.builders)


def fill(mount: Path) -> Path:
    """Write a file until the filesystem is full; the file."""
    junk = mount / "junk"
    chunk = b"\0" * (1 << 20)
    with junk.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return junk


def test_sink_survives_a_full_disk_for_60s_and_loses_nothing(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, tmp_path: Path
) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192m", "tmpfs", str(mount)], check=True)
    dsn = f"chdb://{mount / 'chdb'}"
    endpoint = endpoint_file_for(dsn)
    assert endpoint is not None
    status = tmp_path / "sink.json"
    plant = Plant(kafka_bootstrap, topics.readings, catalog)
    proc = None
    junk: Path | None = None
    try:
        proc = start_sink(kafka_bootstrap, topics, dsn, status, batch_rows=5000,
                          max_pending_rows=MAX_PENDING)
        wait_for(endpoint.exists, 60, "the query endpoint file")
        plant.start()

        def q(sql: str) -> list[list[Any]]:
            return run_query(dsn, sql, endpoint, timeout=30).rows

        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= 10_000, 30,
                 "readings before the outage")
        junk = fill(mount)
        t_fail = time.monotonic()
        wait_for(lambda: (read_status(status) or {}).get("insert_errors", 0) > 0, 30,
                 "inserts to fail")
        time.sleep(15)
        early = read_status(status) or {}
        time.sleep(max(0.0, t_fail + OUTAGE_S - time.monotonic()))
        late = read_status(status) or {}
        assert early["paused"] and late["paused"]
        # buffering stays bounded however long the outage lasts, and while no insert gets
        # through nothing more is consumed (chDB's merges can free a little space on the
        # full disk, let one insert through and so let the sink take in more, up to the
        # bound: a whole consume() call of backlog, 500 frames, was 50k rows at once)
        assert early["pending_rows"] <= BOUND and late["pending_rows"] <= BOUND
        assert late["pending_rows_max"] <= BOUND
        got_through = (late["inserted"].get("readings", 0)
                       - early["inserted"].get("readings", 0))
        if got_through == 0:
            assert late["pending_rows"] == early["pending_rows"]
            assert late["consumed"] == early["consumed"]
        assert late["insert_errors"] > early["insert_errors"]  # it keeps retrying
        junk.unlink()
        junk = None
        t_restored = time.monotonic()
        time.sleep(5)
        plant.stop.set()
        plant.join(60)
        assert not plant.failed
        produced = plant.produced
        assert produced >= RATE * (OUTAGE_S + 5) * 0.8  # the machine may lag a little
        wait_for(lambda: q("SELECT count() FROM readings")[0][0] >= produced, 90,
                 "every reading after the outage")
        caught_up = time.monotonic() - t_restored
        counts = q("SELECT count(), uniqExact(source, epoch, seq), "
                   "(SELECT count() FROM readings FINAL), (SELECT sum(samples) FROM readings_1m)"
                   " FROM readings")
        [[rows, distinct, final_rows, rolled]] = counts
        lost, duplicated = produced - distinct, rows - distinct
        held = (read_status(status) or {})["pending_rows_max"]
        print(f"\noutage: {produced} readings produced, {late['insert_errors']} failed "
              f"inserts, at most {late['pending_rows_max']} rows held during the outage "
              f"and {held} in all (bound {BOUND}), caught up {caught_up:.1f}s after the "
              f"disk was freed; lost={lost} duplicated={duplicated}")
        assert held <= BOUND  # catching up on the backlog, too
        assert (lost, duplicated) == (0, 0)
        assert final_rows == distinct == rolled == produced
        # no gap in any source's numbers
        assert q("SELECT source, min(seq), max(seq), count() FROM readings GROUP BY source "
                 "ORDER BY source") == [[b.source, 1, b.produced, b.produced]
                                        for b in plant.builders]
    finally:
        plant.stop.set()
        if junk is not None:
            junk.unlink(missing_ok=True)
        if proc is not None:
            final = stop_sink(proc)
            assert final["pending_rows"] == 0
        subprocess.run(["umount", "-l", str(mount)], check=False)
