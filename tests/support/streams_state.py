"""For the state tests: a plant workload over several sources and partitions, its windows
recomputed independently, stream workers as processes, and topic readers.

The workload: one source per machine of the shipped catalog (its analog tags), each
sampled every 100 ms for ``seconds`` of event time, one frame per source per 200 ms step,
source ``i`` on input partition ``i % 3``. Some windows of one tag per source carry a
spike (every 3 s from 24 s on, once the detectors have warmed up and have a threshold
history: spikes during the warm-up would be learned as normal), so the detectors have
something to flag on both sides of a crash half-way. A last
"closer" frame per source moves its watermark past every data window, so each window with
data closes by event time, whichever worker holds it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from schemas.events import Aggregate, Anomaly, now_ms
from schemas.readings import FrameBuilder
from schemas.status import read_status

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[int, str, int]  # (window_ms, tag, window_start)
STEP_MS = 200
# event time: whole hours, far enough back that no reading is "from the future"
T0 = (now_ms() - 3_600_000) // 3_600_000 * 3_600_000


@dataclass
class Workload:
    steps: list[list[tuple[int, bytes, bytes]]]  # per step: (partition, key, frame)
    closers: list[tuple[int, bytes, bytes]]
    expected: dict[Key, list[tuple[int, float]]]  # every data window: (ts, value) by ts
    end_ms: int  # event time of the last data reading + 1 step
    sources: list[str] = field(default_factory=list)

    def messages(self) -> list[tuple[int, bytes, bytes]]:
        return [m for step in self.steps for m in step] + self.closers


def workload(catalog: Catalog, seconds: int = 60, seed: int = 11) -> Workload:
    specs = catalog.streams.window_specs()
    machines: dict[str, list[str]] = defaultdict(list)
    for path, info in catalog.tags().items():
        if info.spec.kind == "analog":
            machines[info.machine.name].append(path)
    rng = random.Random(seed)
    builders = {m: FrameBuilder(f"state-{m}", epoch=1) for m in machines}
    partition = {m: i % 3 for i, m in enumerate(machines)}
    expected: dict[Key, list[tuple[int, float]]] = defaultdict(list)
    steps: list[list[tuple[int, bytes, bytes]]] = []
    for step in range(seconds * 1000 // STEP_MS):
        out = []
        for k, (machine, tags) in enumerate(machines.items()):
            fb = builders[machine]
            for ts in range(T0 + step * STEP_MS, T0 + (step + 1) * STEP_MS, 100):
                second = (ts - T0) // 1000
                for i, tag in enumerate(tags):
                    v = 50.0 + 5 * i + rng.gauss(0, 1)
                    if i == 0 and second >= 24 and (second + k) % 3 == 0:
                        v += 40.0  # a spike window: the detector flags it
                    fb.add(tag, ts, v)
                    for spec in specs:
                        pane = ts - ts % spec.pane_ms
                        for s in range(pane - spec.size_ms + spec.pane_ms, pane + 1,
                                       spec.pane_ms):
                            expected[(spec.size_ms, tag, s)].append((ts, v))
            frame = fb.flush()
            assert frame is not None
            out.append((partition[machine], frame.source.encode(), frame.encode()))
        steps.append(out)
    end = T0 + seconds * 1000
    longest = max(s.size_ms for s in specs)
    closers = []
    for machine, tags in machines.items():
        fb = builders[machine]
        fb.add(tags[0], end + longest + catalog.streams.lateness_ms, 0.0)
        frame = fb.flush()
        assert frame is not None
        closers.append((partition[machine], frame.source.encode(), frame.encode()))
    return Workload(steps, closers, dict(expected), end,
                    [f"state-{m}" for m in machines])


class Feeder:
    """Produces frames to their partitions and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})

    def send(self, msgs: list[tuple[int, bytes, bytes]]) -> None:
        for partition, key, value in msgs:
            self.producer.produce(self.topic, value, key, partition=partition)
        assert self.producer.flush(30) == 0


def check_window(key: Key, a: Aggregate, pairs: list[tuple[int, float]]) -> None:
    """``a`` equals a recomputation from the produced readings of its window."""
    vs = [v for _, v in sorted(pairs, key=lambda p: p[0])]
    x = np.asarray(vs)
    assert a.count == len(vs), (key, a.count, len(vs))
    assert abs(a.mean - x.mean()) <= 1e-9 * max(1.0, abs(x.mean())), (key, a.mean, x.mean())
    assert abs(a.std - x.std()) <= 1e-7 * max(1.0, x.std()), (key, a.std, x.std())
    assert (a.min, a.max, a.first, a.last) == (x.min(), x.max(), vs[0], vs[-1]), key
    assert a.window_end - a.window_start == key[0], key


def aggregates_of(values: list[bytes]) -> dict[Key, list[Aggregate]]:
    """Every copy of every window published (several after an at-least-once replay)."""
    out: dict[Key, list[Aggregate]] = defaultdict(list)
    for m in values:
        for a in AggregateFrame.decode(m).aggregates():
            out[(int(a.window_ms or 0), a.tag, a.window_start)].append(a)
    return out


def anomalies_of(values: list[bytes], before: int) -> dict[tuple[str, int, str], int]:
    """How often each (tag, window_start, feature) anomaly of a data window came."""
    out: dict[tuple[str, int, str], int] = defaultdict(int)
    for m in values:
        a = Anomaly.decode(m)
        if a.window_end <= before:
            out[(a.tag, a.window_start, a.feature)] += 1
    return out


class TopicReader:
    """Reads a topic from the start, on and on; ``read_committed`` as a consumer would."""

    def __init__(self, bootstrap: str, topic: str, *, read_committed: bool = True) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
        self.consumer.subscribe([topic])
        self.values: list[bytes] = []

    def poll_until(self, done: Callable[[list[bytes]], bool], timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while not done(self.values) and time.monotonic() < deadline:
            for msg in self.consumer.consume(500, 0.5):
                value = msg.value() if msg.error() is None else None
                if value is not None:
                    self.values.append(value)
        return self.values

    def drain(self, quiet_s: float = 1.0) -> list[bytes]:
        """Read on until nothing came for ``quiet_s``."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            got = [m.value() for m in self.consumer.consume(500, 0.3) if m.error() is None]
            if got:
                self.values += [v for v in got if v is not None]
                last = time.monotonic()
        return self.values

    def close(self) -> None:
        self.consumer.close()


WORKER = """
import json, logging, sys
from pathlib import Path
from schemas.catalog import load_catalog
from schemas.topics import Topics
from streams.app import run_worker
a = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
run_worker(load_catalog(), bootstrap=a["bootstrap"], topics=Topics(a["prefix"]),
           app_id=a["app_id"], status_file=Path(a["status"]), guarantee=a["guarantee"],
           checkpoint_interval_s=a["interval"], session_timeout_s=a["session"],
           loglevel="info")
"""


class Worker:
    """``millstream worker`` as a process (its log in ``folder``), killed or stopped."""

    def __init__(self, name: str, folder: Path, bootstrap: str, prefix: str, app_id: str, *,
                 guarantee: str = "at_least_once", interval: float = 1.0,
                 session: float = 6.0) -> None:
        self.name = name
        self.status_file = folder / f"{name}.json"
        self.log = folder / f"{name}.log"
        args = {"bootstrap": bootstrap, "prefix": prefix, "app_id": app_id,
                "status": str(self.status_file), "guarantee": guarantee,
                "interval": interval, "session": session}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)],
                                         cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})

    def status(self) -> dict[str, Any]:
        return read_status(self.status_file) or {}

    def wait(self, cond: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self.status()):
            assert self.proc.poll() is None, f"{self.name} died: {self.tail()}"
            assert time.monotonic() < deadline, (f"{self.name}: {what} not within {timeout}s; "
                                                 f"status {self.status()}\n{self.tail()}")
            time.sleep(0.2)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def unsaved(self) -> bool:
        """Has it processed frames of every partition it holds since its last checkpoint?"""
        offsets = self.status().get("offsets") or {}
        return bool(offsets) and all((o["next"] or 0) > (o["saved"] or 0)
                                     for o in offsets.values())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)
