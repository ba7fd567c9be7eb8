"""A real Faust streams worker (subprocess) against the session Kafka."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from schemas.events import Aggregate, DeadLetter, now_ms
from schemas.late import LateReadings
from schemas.readings import FrameBuilder, Quality
from schemas.status import read_status
from schemas.topics import Topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_760_000_000
WORKER = (
    "import sys; from pathlib import Path; from schemas.catalog import load_catalog; "
    "from schemas.topics import Topics; from streams.app import run_worker; "
    "run_worker(load_catalog(), bootstrap=sys.argv[1], topics=Topics(sys.argv[2]), "
    "app_id=sys.argv[3], status_file=Path(sys.argv[4]), flush_on_stop=True)"
)


Key = tuple[int, str, int]  # (window_ms, tag, window_start)


def _windows(catalog: Catalog, tag: str, ts: int, late_for: int = 0) -> list[Key]:
    """The windows of every configured size that a reading at ``ts`` belongs to."""
    out = []
    for spec in catalog.streams.window_specs():
        if spec.size_ms == late_for:
            continue
        pane = ts - ts % spec.pane_ms
        out += [(spec.size_ms, tag, s)
                for s in range(pane - spec.size_ms + spec.pane_ms, pane + 1, spec.pane_ms)]
    return out


def _frames(catalog: Catalog) -> tuple[list[bytes], dict[Key, list[tuple[int, float]]], int]:
    """5 s of readings of the OPC-UA source's tags, one frame naming an unknown tag, the
    first frame delivered again, and a frame with a late and a far-future reading."""
    tags = [p for p, i in catalog.tags().items() if i.source.name == "opcua-sim"][:6]
    rng = np.random.default_rng(7)
    fb = FrameBuilder("opcua-sim", epoch=1, max_readings=250)
    values: dict[Key, list[tuple[int, float]]] = defaultdict(list)  # (ts, value)
    out: list[bytes] = []
    for step in range(100):  # one reading per tag every 50 ms
        ts = T0 + step * 50
        for i, tag in enumerate(tags):
            v = float(rng.normal(10 * (i + 1), 1.0))
            bad = step % 17 == 0 and i == 0
            fb.add(tag, ts, None if bad else v, Quality.BAD if bad else Quality.GOOD)
            if not bad:
                for key in _windows(catalog, tag, ts):
                    values[key].append((ts, v))
        if fb.full:
            frame = fb.flush()
            assert frame is not None
            out.append(frame.encode())
    fb.add("acme/plant1/nowhere/x/y/ghost", T0 + 4_990, 1.0)
    fb.add(tags[1], T0 + 4_990, 55.0)
    for key in _windows(catalog, tags[1], T0 + 4_990):
        values[key].append((T0 + 4_990, 55.0))
    last = fb.flush()
    assert last is not None
    out += [last.encode(), out[0]]  # the first frame again: a redelivery, ignored
    fb.add(tags[2], T0 + 125, 77.0)  # its 1 s window has closed: late, yet in the others
    fb.add(tags[2], now_ms() + 3_600_000, 1.0)  # an hour ahead: dead-lettered
    for key in _windows(catalog, tags[2], T0 + 125, late_for=1000):
        values[key].append((T0 + 125, 77.0))
    tail = fb.flush()
    assert tail is not None
    return [*out, tail.encode()], values, len(json.loads(out[0])["tag"])


def _consume(bootstrap: str, topic: str, done: Callable[[list[bytes]], bool],
             timeout: float) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(got) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is not None:
                got.append(value)
    finally:
        c.close()
    return got


def _rows(messages: list[bytes]) -> dict[Key, Aggregate]:
    rows: dict[Key, Aggregate] = {}
    for m in messages:
        for a in AggregateFrame.decode(m).aggregates():
            key = (int(a.window_ms or 0), a.tag, a.window_start)
            assert key not in rows, f"window published twice: {key}"
            rows[key] = a
    return rows


def test_worker_aggregates_routes_late_and_deadletters(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, tmp_path: Path
) -> None:
    frames, values, first_len = _frames(catalog)
    sizes = [s.size_ms for s in catalog.streams.window_specs()]
    assert len(sizes) > 1, "the shipped catalog computes several window sizes"
    longest = max(sizes)
    status = tmp_path / "streams.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app_id = f"test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, kafka_bootstrap, topics.prefix, app_id, str(status)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    short = {k for k in values if k[0] != longest}
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        p.produce(topics.readings, key=b"opcua-sim", value=b"{not json")
        for f in frames:
            p.produce(topics.readings, key=b"opcua-sim", value=f)
        assert p.flush(30) == 0

        # the shorter windows close by watermark, or by the idle timer for the last ones
        got = _consume(kafka_bootstrap, topics.aggregates,
                       lambda ms: short <= set(_rows(ms)), timeout=90)
        assert short <= set(_rows(got)), (sorted(short - set(_rows(got)))[:5], proc.poll())

        late = [LateReadings.decode(m)
                for m in _consume(kafka_bootstrap, topics.late, lambda ms: len(ms) >= 1, 30)]
        assert [(lr.value, lr.missed_ms) for lr in late] == [([77.0], [[1000]])]
        assert "late" in late[0].reason and late[0].watermark >= T0 + 1000

        dead = [DeadLetter.decode(m) for m in _consume(
            kafka_bootstrap, topics.deadletter, lambda ms: len(ms) >= 3, timeout=30)]
        by_reason = {d.reason: d for d in dead}
        assert set(by_reason) == {"not-json", "unknown-tag", "future-timestamp"}
        assert by_reason["not-json"].payload == "{not json"
        assert by_reason["not-json"].stage == "streams"
        assert "ghost" in by_reason["unknown-tag"].detail
        assert json.loads(by_reason["unknown-tag"].payload)["tag"][-2].endswith("ghost")
        assert "ahead of the worker's clock" in by_reason["future-timestamp"].detail

        deadline = time.monotonic() + 10
        while (read_status(status) or {}).get("frames") != len(frames):
            assert time.monotonic() < deadline, read_status(status)
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)  # flush_on_stop: the longest windows come out
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        shutil.rmtree(Path(tempfile.gettempdir()) / f"faust-{app_id}", ignore_errors=True)
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    got = _consume(kafka_bootstrap, topics.aggregates,
                   lambda ms: set(values) <= set(_rows(ms)), timeout=30)
    aggs = _rows(got)
    assert set(aggs) == set(values)
    for key, pairs in values.items():
        vs = [v for _, v in sorted(pairs)]  # by source time: first and last
        a, x = aggs[key], np.asarray(vs)
        assert a.count == len(vs), key
        assert a.mean == pytest.approx(x.mean(), rel=1e-12)
        assert a.std == pytest.approx(x.std(), rel=1e-9, abs=1e-12)
        assert (a.min, a.max, a.first, a.last) == (x.min(), x.max(), vs[0], vs[-1])
        assert a.window_end - a.window_start == key[0]
    final = read_status(status)
    assert final is not None and final["running"] is False
    assert final["deadletters"] == 3 and final["bad_quality"] == 6
    assert final["duplicates"] == first_len and final["late"] == 1
    assert final["dead_readings"] == {"unknown-tag": 1, "future-timestamp": 1}
