"""``millstream bench latency``: from a value change at the simulator to its command result.

The plant simulator, a connector per source, a stream worker and the executor run as their
own processes on a real Kafka, as in the demo (:mod:`millstream.bench.latency_catalog`
says what plant). A Modbus source polls a background load (10,000 readings/s by default)
the whole time. Then, ``changes`` times, one machine's spindle temperature is forced above
its limit at the simulator (served at once with a fresh source timestamp), the benchmark
waits for the command result on Kafka, releases the tag, and pauses before the next, on
the next machine. Each change is measured from its source timestamp to the moment the
result arrives on Kafka (the fast path: a limit checked on the reading), and to the first
anomaly whose window holds it (the window path: the detector scores closed windows). Hop
by hop medians say where the time goes.

The last stdout line: ``{"changes", "p50_ms", "p99_ms", "max_ms", "anomaly_p50_ms",
"anomaly_p99_ms", "background_per_s", ...}``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from millstream.bench._proc import LineChild, cpu_seconds, say
from millstream.bench.broker import BenchKafka, bench_kafka
from millstream.bench.latency_catalog import (
    BOUND,
    BULK_POLL_MS,
    BULK_SOURCE,
    BULK_TAGS,
    FAST_SOURCE,
    fast_machines,
    write_catalog,
)
from millstream.bench.latency_stats import Change, summarize
from millstream.bench.latency_watch import Watcher
from millstream.bench.wire import _sigterm_as_interrupt
from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics, free_port
from millstream.stack.processes import Child
from schemas.catalog import Catalog, load_catalog
from schemas.exceptions import MillstreamError
from schemas.status import read_status
from schemas.topics import Topics

__all__ = ["DEFAULT_CHANGES", "TARGET_P99_MS", "run"]

DEFAULT_CHANGES = 200
TARGET_P99_MS = 50.0
FORCED = 120.0  # degC: well above the limit, a single reading crosses it
RESULT_TIMEOUT_S = 10.0
MISSES_IN_A_ROW = 3  # then the stack is broken, not slow: stop with the reason
# of windows before the first change: the detectors' thresholds come from their history,
# widened while it is short (x2 at 10 windows), so a brief spike stands out only after
# a few dozen windows (the window path's figures need it; the fast path does not)
WARMUP_S = 40.0


def run(settings: Settings, changes: int | None = None, *, machines: int = 6,
        background_per_s: int = 10_000, fast_ms: float = 10.0, warmup_s: float = WARMUP_S,
        gap_ms: tuple[int, int] = (150, 300), seed: int = 7) -> dict[str, Any]:
    """The whole benchmark; its JSON-ready result, the issue's figures first."""
    n = DEFAULT_CHANGES if changes is None else changes
    if n < 1 or machines < 1 or background_per_s < 0:
        raise MillstreamError(f"--changes must be at least 1 (got {n}), machines at least 1 "
                              f"and the background load not negative")
    bulk = -(-background_per_s * BULK_POLL_MS // (1000 * BULK_TAGS))
    load = os.getloadavg()[0]
    work = settings.data_dir / "bench" / f"latency-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    say(f"run folder (logs, catalog, status files): {work}")
    opcua_port, modbus_port = free_port(), free_port()
    catalog_path = write_catalog(
        work / "catalog.yaml", opcua_endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/millstream/",
        modbus_endpoint=f"127.0.0.1:{modbus_port}", machines=machines, bulk_machines=bulk,
        fast_ms=fast_ms, cooldown_s=0.5)
    catalog = load_catalog(catalog_path)
    prefix = f"millstream-bench-latency-{os.getpid()}-{int(time.time())}"
    with _sigterm_as_interrupt(), bench_kafka(settings) as k:
        try:
            out = _measure(k, catalog, catalog_path, work, Topics(prefix), n,
                           (opcua_port, modbus_port), warmup_s, gap_ms, random.Random(seed),
                           settings.kafka_env())
        finally:
            if settings.kafka_bootstrap:
                k.delete_created(prefix)
    out.update(target_p99_ms=TARGET_P99_MS,
               target_met=out["p99_ms"] is not None and out["p99_ms"] <= TARGET_P99_MS,
               fast_machines=machines, fast_interval_ms=fast_ms, bulk_machines=bulk,
               bulk_tags=bulk * BULK_TAGS, run_dir=str(work), kafka=k.description,
               cpus=os.cpu_count(),
               loadavg_1m={"start": round(load, 2), "end": round(os.getloadavg()[0], 2)})
    return out


class _Stack:
    """The benchmark's processes: simulator, worker, executor, one connector per source."""

    def __init__(self, k: BenchKafka, catalog_path: Path, work: Path, topics: Topics,
                 ports: tuple[int, int], bulk: bool, kafka_env: dict[str, str]) -> None:
        opcua = f"opc.tcp://127.0.0.1:{ports[0]}/millstream/"
        modbus = f"127.0.0.1:{ports[1]}"
        self.work = work
        env = {**kafka_env,  # TLS/SASL, with the CA resolved to a file
               "MILLSTREAM_KAFKA_BOOTSTRAP": k.bootstrap, "MILLSTREAM_TOPIC_PREFIX": topics.prefix,
               "MILLSTREAM_DATA_DIR": str(work / "data"), "MILLSTREAM_CATALOG": str(catalog_path),
               # every change is a command: the gateway's rate limits are not under test
               "MILLSTREAM_EXECUTOR_MAX_RATE_PER_SETPOINT": "100000",
               "MILLSTREAM_EXECUTOR_MAX_RATE_PER_MACHINE": "100000", "PYTHONUNBUFFERED": "1"}
        logs, tag = work / "logs", f"bench-latency-{os.getpid()}"
        self.sim = LineChild("simulator", "millstream.bench._latency_sim",
                             ["--catalog", str(catalog_path), "--opcua-port", str(ports[0]),
                              "--modbus-port", str(ports[1])], logs / "simulator.log")
        self.worker = Child("worker", ["worker", "--app-id", tag, "--status-file",
                                       str(work / "worker.json")], env, logs / "worker.log")
        self.executor = Child("executor", [
            "executor", "--group-id", f"{tag}-executor",
            "--status-file", str(work / "executor.json"),
            "--endpoint", f"{FAST_SOURCE}={opcua}", "--endpoint", f"{BULK_SOURCE}={modbus}"],
            env, logs / "executor.log")
        self.connectors = {
            name: Child(f"connect-{name}", ["connect", name, "--endpoint", url, "--status-file",
                                            str(work / f"source-{name}.json")],
                        env, logs / f"connect-{name}.log")
            for name, url in ((FAST_SOURCE, opcua), (BULK_SOURCE, modbus))
            if bulk or name != BULK_SOURCE}

    def start(self) -> None:
        self.sim.start()
        self.sim.expect("ready", timeout=120)
        self.worker.start()
        self.executor.start()
        for c in self.connectors.values():
            c.start()

    def check(self) -> None:
        for c in (self.worker, self.executor, *self.connectors.values()):
            if not c.alive:
                raise MillstreamError(f"the {c.name} process exited with code {c.returncode}; "
                                      f"last lines of {c.log}:\n{c.tail()}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds each process has used so far."""
        pids = {"simulator": self.sim.pid, **{c.name: c.proc.pid for c in (
            self.worker, self.executor, *self.connectors.values()) if c.proc is not None}}
        return {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}

    def produced(self, source: str) -> int:
        doc = read_status(self.work / f"source-{source}.json") or {}
        return int(doc.get("produced") or 0)

    def force(self, tag: str, value: float | None, i: int) -> int:
        self.sim.send(id=i, force=tag, value=value)
        return int(self.sim.expect("forced", timeout=30)["ts"])

    def stop(self) -> None:
        for c in (*self.connectors.values(), self.worker, self.executor):
            c.stop(timeout=20)
        self.sim.stop()


def _wait(what: str, cond: Callable[[], bool], stack: _Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        stack.check()
        if time.monotonic() > deadline:
            raise MillstreamError(f"benchmark: {what} did not happen within {timeout:.0f}s; "
                                  f"see the logs in {stack.work / 'logs'}")
        time.sleep(0.2)


def _measure(k: BenchKafka, catalog: Catalog, catalog_path: Path, work: Path, topics: Topics,
             n: int, ports: tuple[int, int], warmup_s: float, gap_ms: tuple[int, int],
             rng: random.Random, kafka_env: dict[str, str]) -> dict[str, Any]:
    ensure_topics(k.bootstrap, topics, k.conf)
    k.created.extend(topics.all())
    names = fast_machines(sum(1 for m in catalog.machines if m.source == FAST_SOURCE))
    temps = {m: catalog.resolve(f"{m}/spindle_temp") for m in names}
    sps = {m: catalog.resolve(f"{m}/spindle_speed_sp") for m in names}
    watcher = Watcher(k.bootstrap, k.conf, topics, FAST_SOURCE, temps.values(), BOUND)
    watcher.start()
    bulk = any(s.name == BULK_SOURCE for s in catalog.sources)
    stack = _Stack(k, catalog_path, work, topics, ports, bulk, kafka_env)
    try:
        stack.start()
        say("simulator up; waiting for readings from both connectors ...")
        _wait("readings from every source", lambda: watcher.fast_readings()[0] > 0
              and (not bulk or stack.produced(BULK_SOURCE) > 0), stack, 180)
        first = watcher.fast_readings()[1] or 0
        say(f"data flows; warming up the detector ({warmup_s:.0f}s of windows) ...")
        _wait("the warm-up", lambda: time.time() * 1000 - first > warmup_s * 1000, stack,
              warmup_s + 60)

        def change(i: int, machine: str) -> Change:
            ts = stack.force(temps[machine], FORCED, i)
            hit = watcher.wait_result(sps[machine], ts, RESULT_TIMEOUT_S)
            stack.force(temps[machine], None, i)
            time.sleep(rng.uniform(*gap_ms) / 1000)
            return Change(machine, temps[machine], ts, hit)

        ok = 0  # the first commands find the worker started and open the executor's sessions
        for i in range(12):
            ok += change(-1 - i, names[i % len(names)]).hit is not None
            if ok == 2:
                break
        else:
            raise MillstreamError(f"benchmark: no command result for {12 - ok} of 12 warm-up "
                                  f"changes; see the logs in {work / 'logs'}")
        bulk0, t0, cpu0 = stack.produced(BULK_SOURCE), time.monotonic(), stack.cpu()
        say(f"measuring {n} changes ...")
        done: list[Change] = []
        for i in range(n):
            done.append(change(i, names[i % len(names)]))
            if len(done) >= MISSES_IN_A_ROW and all(c.hit is None
                                                    for c in done[-MISSES_IN_A_ROW:]):
                raise MillstreamError(
                    f"benchmark: {MISSES_IN_A_ROW} changes in a row got no command result "
                    f"within {RESULT_TIMEOUT_S:.0f}s each (is Kafka up? watcher errors: "
                    f"{watcher.errors[-3:]}); see the logs in {work / 'logs'}")
            if (i + 1) % 25 == 0 or i + 1 == n:
                stack.check()
                lat = [c.latency_ms for c in done[-25:] if c.latency_ms is not None]
                say(f"  {i + 1}/{n} changes; last 25: median "
                    f"{sorted(lat)[len(lat) // 2] if lat else None} ms")
        elapsed = time.monotonic() - t0
        background = (stack.produced(BULK_SOURCE) - bulk0) / elapsed
        cpu = {k: round((v - cpu0.get(k, 0.0)) / elapsed, 3) for k, v in stack.cpu().items()}
        say("waiting for the last windows to close (anomalies) ...")
        time.sleep(3.5)
    finally:
        stack.stop()
        watcher.stop()
    out = summarize(done, watcher, background)
    out["cpu_share"] = cpu  # CPU seconds per second of the measurement, by process
    return out
