"""SPC end to end: readings of a characteristic on a real Kafka, through a real Faust
worker (subprocess), give a named violation and a shift's capability on the spc topic,
and the ClickHouse sink (subprocess, chDB) stores both in their tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from millstream.query import endpoint_file_for, run_query
from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.readings import FrameBuilder
from schemas.spc_events import SpcCapability, SpcViolation, decode_spc
from schemas.topics import Topics
from tests.integration.test_sink_clickhouse import start_sink, stop_sink, wait_for
from tests.integration.test_streams_worker import WORKER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CNC = "acme/plant1/machining/line1/cnc-01/cycle_time"


def _last_shift_start(now: int) -> int:
    """The latest shift start of the shipped plant (06:00, 14:00, 22:00 UTC) at least a
    minute before ``now``."""
    day = datetime.fromtimestamp(now / 1000, UTC).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    starts = [day + timedelta(days=d, hours=h) for d in (-1, 0) for h in (6, 14, 22)]
    return max(int(s.timestamp() * 1000) for s in starts
               if s.timestamp() * 1000 <= now - 60_000)


def _frames(boundary: int, baseline: int) -> tuple[list[bytes], list[float]]:
    """Cycle times in the shift before ``boundary`` (``baseline`` of them, a jump, 5
    normal ones), one after it, and the first frame delivered again."""
    values = [35.8, 36.2] * (baseline // 2) + [57.6, 35.8, 36.2, 35.8, 36.2, 36.0]
    fb = FrameBuilder("opcua-sim", epoch=7, max_readings=20)
    out = []
    t0 = boundary - 60_000
    for i, v in enumerate(values):
        fb.add(CNC, t0 + i * 100, v)
        if fb.full:
            frame = fb.flush()
            assert frame is not None
            out.append(frame.encode())
    fb.add(CNC, boundary + 1_000, 36.0)
    last = fb.flush()
    assert last is not None
    return [*out, last.encode(), out[0]], values


def _consume(bootstrap: str, topic: str, violations: int,
             timeout: float) -> list[SpcViolation | SpcCapability]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[SpcViolation | SpcCapability] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            got.append(decode_spc(msg.value()))
            if (sum(isinstance(r, SpcViolation) for r in got) >= violations
                    and any(isinstance(r, SpcCapability) for r in got)):
                break
    finally:
        c.close()
    return got


def test_a_jump_in_cycle_time_is_a_named_violation_in_kafka_and_clickhouse(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, chdb_dsn: str, tmp_path: Path
) -> None:
    [spec] = [c for c in catalog.spc.characteristics if c.tag == "cnc-01/cycle_time"]
    assert spec.chart == "individuals" and spec.baseline_points % 2 == 0 and spec.usl
    t_start = time.monotonic()
    boundary = _last_shift_start(now_ms())
    frames, values = _frames(boundary, spec.baseline_points)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for f in frames:
        p.produce(topics.readings, key=b"opcua-sim", value=f)
    assert p.flush(30) == 0

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, kafka_bootstrap, topics.prefix,
         f"spc-{uuid.uuid4().hex[:8]}", str(tmp_path / "streams.json")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sink = start_sink(kafka_bootstrap, topics, chdb_dsn, tmp_path / "sink.json")
    try:
        got = _consume(kafka_bootstrap, topics.spc, len(spec.rules), timeout=120)
        violations = [r for r in got if isinstance(r, SpcViolation)]
        caps = [r for r in got if isinstance(r, SpcCapability)]
        # the jump breaks rule 1 of each of the characteristic's rule sets (range-1: its
        # moving range is above the MR chart's UCL)
        assert "range" in spec.rules
        assert sorted(v.rule for v in violations) == sorted(f"{r}-1" for r in spec.rules), (
            got, worker.poll())
        jump = boundary - 60_000 + spec.baseline_points * 100
        sigma = 0.4 / 1.128  # the baseline's moving ranges are all 0.4
        [mr] = [v for v in violations if v.rule == "range-1"]
        assert (mr.tag, mr.ts, mr.statistic) == (CNC, jump, "moving_range")
        assert mr.ucl == pytest.approx(3.267 * 0.4) and mr.value > mr.ucl
        for v in violations:
            if v.rule == "range-1":
                continue
            assert (v.tag, v.ts, v.value) == (CNC, jump, 57.6)
            assert v.centre == pytest.approx(36.0) and v.ucl == pytest.approx(36 + 3 * sigma)
            assert v.message.startswith(f"{v.rule}: 1 point beyond 3 sigma on {CNC}")
        [cap] = caps
        # the shift's own figures, by hand: its points, moving ranges within the shift
        mean = sum(values) / len(values)
        mrbar = sum(abs(b - a) for a, b in pairwise(values)) / (len(values) - 1)
        assert (cap.shift_end, cap.points, cap.complete) == (boundary, len(values), True)
        assert cap.mean == pytest.approx(mean)
        assert cap.sigma_within == pytest.approx(mrbar / 1.128)
        assert cap.cp is None and cap.cpk is not None
        assert cap.cpk == pytest.approx((spec.usl - mean) / (3 * mrbar / 1.128))
        assert "only USL" in cap.note

        endpoint = endpoint_file_for(chdb_dsn)
        assert endpoint is not None
        wait_for(endpoint.exists, 60, "the sink's query endpoint")

        def q(sql: str) -> list[list[Any]]:
            return run_query(chdb_dsn, sql, endpoint).rows

        wait_for(lambda: q("SELECT count() FROM spc_capability")[0][0] >= 1
                 and q("SELECT count() FROM spc_violations")[0][0] >= len(violations), 60,
                 "the spc rows in ClickHouse")
        assert q("SELECT rule, value, toUnixTimestamp64Milli(ts) FROM spc_violations FINAL "
                 "ORDER BY rule") == [[v.rule, pytest.approx(v.value), jump]
                                      for v in sorted(violations, key=lambda v: v.rule)]
        rows = q("SELECT points, complete, cp, round(cpk, 6), note FROM spc_capability FINAL")
        assert rows == [[len(values), True, None, round(cap.cpk, 6), cap.note]]
    finally:
        stop_sink(sink)
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    print(f"spc end to end: {time.monotonic() - t_start:.1f} s")
