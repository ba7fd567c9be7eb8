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
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from schemas.catalog import Catalog
from schemas.events import Aggregate, DeadLetter
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
    "app_id=sys.argv[3], status_file=Path(sys.argv[4]))"
)


def _frames(catalog: Catalog) -> tuple[list[bytes], dict[tuple[str, int], list[float]]]:
    """5 s of readings of the OPC-UA source's tags, plus one frame naming an unknown tag."""
    tags = [p for p, i in catalog.tags().items() if i.source.name == "opcua-sim"][:6]
    rng = np.random.default_rng(7)
    fb = FrameBuilder("opcua-sim", epoch=1, max_readings=250)
    values: dict[tuple[str, int], list[float]] = defaultdict(list)
    out: list[bytes] = []
    for step in range(100):  # one reading per tag every 50 ms
        ts = T0 + step * 50
        for i, tag in enumerate(tags):
            v = float(rng.normal(10 * (i + 1), 1.0))
            bad = step % 17 == 0 and i == 0
            fb.add(tag, ts, None if bad else v, Quality.BAD if bad else Quality.GOOD)
            if not bad:
                values[(tag, ts - ts % 1000)].append(v)
        if fb.full:
            frame = fb.flush()
            assert frame is not None
            out.append(frame.encode())
    fb.add("acme/plant1/nowhere/x/y/ghost", T0 + 4_990, 1.0)
    fb.add(tags[1], T0 + 4_990, 55.0)
    values[(tags[1], T0 + 4_000)].append(55.0)
    last = fb.flush()
    assert last is not None
    out.append(last.encode())
    return out, values


def _consume(bootstrap: str, topic: str, want: int, timeout: float) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is not None:
                got.append(value)
    finally:
        c.close()
    return got


def test_worker_aggregates_and_deadletters(
    kafka_bootstrap: str, topics: Topics, catalog: Catalog, tmp_path: Path
) -> None:
    frames, values = _frames(catalog)
    status = tmp_path / "streams.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app_id = f"test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, kafka_bootstrap, topics.prefix, app_id, str(status)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        p.produce(topics.readings, key=b"opcua-sim", value=b"{not json")
        for f in frames:
            p.produce(topics.readings, key=b"opcua-sim", value=f)
        assert p.flush(30) == 0

        # every window closes: by watermark, or by the idle timer for the last ones
        got = _consume(kafka_bootstrap, topics.aggregates, len(values), timeout=90)
        aggs = {(a.tag, a.window_start): a for a in map(Aggregate.decode, got)}
        assert len(got) == len(aggs) == len(values), proc.poll()
        for key, vs in values.items():
            a, x = aggs[key], np.asarray(vs)
            assert a.count == len(vs)
            assert a.mean == pytest.approx(x.mean(), rel=1e-12)
            assert a.std == pytest.approx(x.std(), rel=1e-9, abs=1e-12)
            assert (a.min, a.max, a.first, a.last) == (x.min(), x.max(), vs[0], vs[-1])

        dead = [DeadLetter.decode(m)
                for m in _consume(kafka_bootstrap, topics.deadletter, 2, timeout=30)]
        by_reason = {d.reason: d for d in dead}
        assert set(by_reason) == {"not-json", "unknown-tag"}
        assert by_reason["not-json"].payload == "{not json"
        assert by_reason["not-json"].stage == "streams"
        assert "ghost" in by_reason["unknown-tag"].detail
        assert json.loads(by_reason["unknown-tag"].payload)["tag"][-2].endswith("ghost")

        deadline = time.monotonic() + 10
        while (read_status(status) or {}).get("frames") != len(frames):
            assert time.monotonic() < deadline, read_status(status)
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        shutil.rmtree(Path(tempfile.gettempdir()) / f"faust-{app_id}", ignore_errors=True)
    final = read_status(status)
    assert final is not None and final["running"] is False
    assert final["deadletters"] == 2 and final["bad_quality"] == 6
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
