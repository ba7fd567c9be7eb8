"""``millstream demo``: the whole platform on the local stack, live, in one command.

Starts (or uses) Kafka, and Mosquitto when the plant has MQTT sources, then one child
process per stage: the plant simulator (OPC-UA, Modbus, a Sparkplug B edge node), a
connector per source, a stream worker, the ClickHouse sink, the command executor and the
dashboard (its URL is printed). Shows live counts on stderr; at the end stops the stages
in data order so nothing in flight is lost, and returns a summary computed from ClickHouse
and the sequence numbers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics, free_port, kafka_for
from millstream.stack.locate import broker_file, write_broker_file
from millstream.stack.mosquitto import EmbeddedMosquitto, find_mosquitto
from millstream.stack.processes import Child
from millstream.summary import SourceRun, summarize
from schemas.catalog import load_catalog
from schemas.events import now_ms
from schemas.status import read_status
from schemas.topics import Topics

__all__ = ["DEFAULT_FAULTS", "DemoOptions", "run_demo"]

logger = logging.getLogger(__name__)

# An overheat once the detectors have warmed up (the connectors join a few seconds after
# the simulator starts) that shows the whole loop (anomaly -> alarm, limit rule -> command
# -> machine), an overheat on the Sparkplug B compressor (an alarm; no rule acts on it),
# then one of each other fault: one alarm episode each.
DEFAULT_FAULTS = [
    "overheat@cnc-01:30+40",
    "overheat@compressor-02:40+40",
    "pressure_loss@press-01:55+30",
    "stuck_sensor@compressor-01/discharge_temp:75+30",
    "bearing_wear@cnc-01:110+60",
]


@dataclass
class DemoOptions:
    duration: float | None = None  # seconds; None: until Ctrl-C
    seed: int = 7
    faults: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    drain_timeout: float = 60.0
    dashboard: bool = True


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; while the stages run it starts an orderly shutdown."""


@contextlib.contextmanager
def _kafka(settings: Settings) -> Iterator[str]:
    """Kafka for the demo; an embedded broker is advertised for other terminals."""
    with kafka_for(settings, settings.data_dir / "kafka", port=settings.kafka_port) as bootstrap:
        if settings.kafka_bootstrap:
            yield bootstrap
            return
        write_broker_file(settings, bootstrap)
        try:
            yield bootstrap
        finally:
            broker_file(settings).unlink(missing_ok=True)


@contextlib.contextmanager
def _mosquitto(settings: Settings, needed: bool) -> Iterator[str | None]:
    """The demo's own MQTT broker (fresh each run), or None when no source speaks MQTT."""
    if not needed:
        yield None
        return
    with EmbeddedMosquitto(settings.data_dir / "mosquitto") as broker:
        yield broker.endpoint


def _check_mosquitto(mqtt_sources: list[str]) -> None:
    """Fail before anything starts if the plant needs Mosquitto and it is not installed."""
    if not mqtt_sources:
        return
    try:
        find_mosquitto()
    except StackError as exc:
        raise StackError(
            f"the demo plant's MQTT source(s) {', '.join(mqtt_sources)} (Sparkplug B) need "
            "Mosquitto, which is not installed. Run `sudo apt-get install mosquitto` (Debian; "
            "`sudo make setup` does it too), then `make demo` again.") from exc


def _say(msg: str) -> None:
    print(f"millstream: {msg}", file=sys.stderr, flush=True)


def run_demo(settings: Settings, opts: DemoOptions) -> dict[str, Any]:
    catalog = load_catalog(settings.catalog)
    topics = Topics(settings.topic_prefix)
    started_ms = now_ms()
    run_dir = opts.run_dir or settings.data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    mqtt_sources = [s.name for s in catalog.sources if s.protocol == "mqtt"]
    _check_mosquitto(mqtt_sources)
    run_dir.mkdir(parents=True, exist_ok=True)
    interrupted = False

    def _on_sigint(_signum: int, _frame: object) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigint)
    with _kafka(settings) as bootstrap, _mosquitto(settings, bool(mqtt_sources)) as mqtt:
        ensure_topics(bootstrap, topics, settings.kafka_client_config())
        env = {
            "MILLSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "MILLSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "MILLSTREAM_CLICKHOUSE_DSN": settings.dsn,
            "MILLSTREAM_DATA_DIR": str(settings.data_dir),
            "MILLSTREAM_CACHE_DIR": str(settings.cache_dir),
            "MILLSTREAM_METRICS_PORT": "0",  # each stage any free port: its status file names it
            "PYTHONUNBUFFERED": "1",
            **settings.kafka_env(),  # TLS/SASL: the stages log in as the settings say
        }
        if settings.catalog:
            env["MILLSTREAM_CATALOG"] = str(settings.catalog)
        opcua_port, modbus_port = free_port(), free_port()
        by_protocol = {
            "opcua": f"opc.tcp://127.0.0.1:{opcua_port}/millstream/",
            "modbus": f"127.0.0.1:{modbus_port}",
            "mqtt": mqtt or "",
        }
        endpoints = {s.name: by_protocol[s.protocol] for s in catalog.sources}
        logs = run_dir / "logs"
        faults = opts.faults or DEFAULT_FAULTS
        sim_args = ["simulate", "--opcua-port", str(opcua_port), "--modbus-port",
                    str(modbus_port), "--seed", str(opts.seed)]
        if mqtt is not None:
            sim_args += ["--mqtt-broker", mqtt]  # its Sparkplug edge node publishes there
        for f in faults:
            sim_args += ["--fault", f]
        sim = Child("simulator", sim_args, env, logs / "simulator.log")
        sink = Child("sink", ["sink", "--status-file", str(run_dir / "sink.json")], env,
                     logs / "sink.log")
        # --flush-on-stop: the demo's end is the end of the run, so its last windows are
        # emitted (a restart, instead, would continue them from the checkpoint)
        worker = Child("worker", ["worker", "--status-file", str(run_dir / "worker.json"),
                                  "--flush-on-stop"], env, logs / "worker.log")
        executor = Child("executor", ["executor", "--status-file", str(run_dir / "executor.json"),
                                      *[f"--endpoint={k}={v}" for k, v in endpoints.items()]],
                         env, logs / "executor.log")
        connectors = [
            Child(f"connect-{s.name}", ["connect", s.name, "--endpoint", endpoints[s.name],
                                        "--status-file", str(run_dir / f"source-{s.name}.json")],
                  env, logs / f"connect-{s.name}.log")
            for s in catalog.sources
        ]
        dash_port = _dashboard_port(settings) if opts.dashboard else None
        dashboard = Child("dashboard", ["dashboard", "--status-file",
                                        str(run_dir / "dashboard.json"), "--host",
                                        settings.dashboard_host, "--port", str(dash_port)],
                          env, logs / "dashboard.log")
        stages = [sim, sink, worker, executor] + ([dashboard] if opts.dashboard else [])
        children = [*stages, *connectors]
        _say(f"run folder {run_dir} (logs, status files); faults: {', '.join(faults)}"
             + (f"; MQTT broker {mqtt}" if mqtt else ""))
        try:
            for child in stages:
                child.start()
            _wait_listening(sim, [opcua_port, modbus_port])  # before the connectors dial in
            for child in connectors:
                child.start()
            _say(f"running{'' if opts.duration is None else f' for {opts.duration:.0f} s'}; "
                 "Ctrl-C stops. Query from another terminal: millstream query \"SELECT ...\"")
            if opts.dashboard:
                _say(f"dashboard: {_dashboard_url(dashboard, run_dir)}")
            _watch(children, run_dir, catalog.sources, opts.duration, started_ms)
        except _Interrupted:
            interrupted = True
            _say("stopping (Ctrl-C) ...")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the shutdown finish
            dashboard.stop()  # a viewer: nothing of its own to drain
            runs = _shutdown(connectors, sim, sink, worker, executor, run_dir,
                             opts.drain_timeout)
            signal.signal(signal.SIGINT, old)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    summary = summarize(settings.dsn, runs, started_ms)
    summary["interrupted"] = interrupted
    summary["run_dir"] = str(run_dir)
    return summary


def _dashboard_port(settings: Settings) -> int:
    """The configured dashboard port, or any free one (said) when another process has it:
    a second demo, or anything else on 8080, must not stop this one."""
    port = settings.dashboard_port
    if port == 0:
        return 0
    try:
        with socket.socket(socket.AF_INET6 if ":" in settings.dashboard_host
                           else socket.AF_INET) as s:
            s.bind((settings.dashboard_host, port))
    except OSError:
        _say(f"port {port} is taken (MILLSTREAM_DASHBOARD_PORT): the dashboard takes a free one")
        return 0
    return port


def _dashboard_url(dashboard: Child, run_dir: Path, timeout: float = 30.0) -> str:
    """The dashboard's URL from its status file, once it listens."""
    found: list[str] = []

    def _listening() -> bool:
        if not dashboard.alive:
            raise StackError(f"the dashboard exited with code {dashboard.returncode}; last "
                             f"lines of {dashboard.log}:\n{dashboard.tail()}")
        url = _status(run_dir, "dashboard").get("url")
        if url:
            found.append(str(url))
        return bool(found)

    if not _wait_until(_listening, timeout):
        return f"not up after {timeout:.0f} s (see {dashboard.log})"
    return found[0]


def _status(run_dir: Path, name: str) -> dict[str, Any]:
    return read_status(run_dir / f"{name}.json") or {}


def _count(doc: dict[str, Any], *path: str) -> int:
    cur: Any = doc
    for p in path:
        cur = cur.get(p, {}) if isinstance(cur, dict) else {}
    return int(cur) if isinstance(cur, int | float) else 0


def _line(run_dir: Path, sources: list[Any], elapsed: float) -> str:
    produced = sum(_count(_status(run_dir, f"source-{s.name}"), "produced") for s in sources)
    sink = _status(run_dir, "sink")
    worker = _status(run_dir, "worker")
    ex = _status(run_dir, "executor")
    ins = sink.get("inserted", {})
    return (f"t={elapsed:5.0f}s  readings {produced:,} -> clickhouse {_count(ins, 'readings'):,}"
            f" | aggregates {_count(worker, 'aggregates'):,} anomalies "
            f"{_count(worker, 'anomalies')} alarms {_count(worker, 'alarms_raised')}"
            f" ({_count(worker, 'alarms_open')} open) commands {_count(worker, 'commands')}"
            f" (applied {_count(ex, 'applied')}, rejected {_count(ex, 'rejected')})"
            f" | dead letters {_count(sink, 'deadlettered') + _count(worker, 'deadletters')}")


def _watch(children: list[Child], run_dir: Path, sources: list[Any], duration: float | None,
           started_ms: int) -> None:
    start = time.monotonic()
    tty = sys.stderr.isatty()
    while duration is None or time.monotonic() - start < duration:
        time.sleep(1.0 if tty else 5.0)
        for c in children:
            if not c.alive:
                raise StackError(f"the {c.name} process exited with code {c.returncode}; "
                                 f"last lines of {c.log}:\n{c.tail()}")
        line = _line(run_dir, sources, time.monotonic() - start)
        print(("\r" + line + "\033[K") if tty else line, end="" if tty else "\n",
              file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)


def _wait_listening(sim: Child, ports: list[int], timeout: float = 60.0) -> None:
    """Until the simulator accepts connections on every port (its OPC-UA start takes ~2-4 s)."""
    def _all_open() -> bool:
        if not sim.alive:
            raise StackError(f"the simulator exited with code {sim.returncode}; last lines "
                             f"of {sim.log}:\n{sim.tail()}")
        for port in ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    if not _wait_until(_all_open, timeout):
        raise StackError(f"the simulator did not listen on ports {ports} within {timeout:.0f} s; "
                         f"see {sim.log}")


def _wait_until(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return False


def _shutdown(connectors: list[Child], sim: Child, sink: Child, worker: Child,
              executor: Child, run_dir: Path,
              drain_timeout: float) -> list[SourceRun]:
    """Stop in data order: sources first, then wait for the sink to store what they sent."""
    _say("stopping connectors and draining the pipeline ...")
    for c in connectors:
        c.stop()
    runs: list[SourceRun] = []
    for c in connectors:
        name = c.name.removeprefix("connect-")
        st = _status(run_dir, f"source-{name}")
        if st:
            runs.append(SourceRun(name, int(st.get("epoch", 0)), _count(st, "produced"),
                                  _count(st, "delivered")))
    delivered = sum(r.delivered for r in runs)

    def _sink_has_readings() -> bool:
        return _count(_status(run_dir, "sink"), "inserted", "readings") >= delivered

    if sink.alive and not _wait_until(_sink_has_readings, drain_timeout):
        logger.warning("the sink had not stored all %d delivered readings after %.0f s",
                       delivered, drain_timeout)
    def _worker_has_readings() -> bool:
        return _count(_status(run_dir, "worker"), "readings") >= delivered

    # the worker flushes its open windows when it stops: it must have seen every reading
    if worker.alive and not _wait_until(_worker_has_readings, drain_timeout):
        logger.warning("the worker had not processed all %d delivered readings after %.0f s",
                       delivered, drain_timeout)
    worker.stop()
    time.sleep(1.5)  # the executor acts on the worker's last commands
    executor.stop()

    def _sink_quiet() -> bool:
        before = _status(run_dir, "sink").get("inserted")
        time.sleep(1.5)
        return bool(_status(run_dir, "sink").get("inserted") == before)

    if sink.alive:
        _wait_until(_sink_quiet, 15)
    sink.stop()
    sim.stop()
    return runs
