"""millstream: industrial stream processing on Kafka.

One subcommand per stage (simulate, connect, worker, sink, executor), the local stack
(setup, kafka, demo), and the analyst's tools (query, bench).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from millstream import commands
from millstream.commands import sink_migrate
from millstream.settings import Settings, load_settings
from schemas.catalog import Catalog, load_catalog
from schemas.exceptions import MillstreamError
from schemas.topics import Topics

__all__ = ["build_parser", "main"]

logger = logging.getLogger("millstream")

Handler = Callable[[argparse.Namespace, Settings], int]


def _catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog)


def _topics(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


def _stop_event_on_signals() -> threading.Event:
    """A threading.Event set by SIGINT/SIGTERM: stages stop cleanly and flush."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    return stop


def _async_stop_event() -> asyncio.Event:
    """An asyncio.Event set by SIGINT/SIGTERM, for coroutine-based stages (call in a loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


# -- commands ------------------------------------------------------------------------------

def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.kafka import fetch_kafka

    _catalog(settings)  # fail early on a bad catalog
    if settings.kafka_bootstrap:
        print(f"millstream: using Kafka at {settings.kafka_bootstrap}; nothing to fetch",
              file=sys.stderr)
        return 0
    libs = fetch_kafka(settings.cache_dir, settings.kafka_version)
    print(f"millstream: Apache Kafka {settings.kafka_version} ready ({libs})", file=sys.stderr)
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.kafka import EmbeddedKafka, ensure_topics, fetch_kafka
    from millstream.stack.kafka_security import embedded_security
    from millstream.stack.locate import broker_file, write_broker_file

    security = embedded_security(settings)
    libs = fetch_kafka(settings.cache_dir, settings.kafka_version)
    stop = _stop_event_on_signals()
    kafka = EmbeddedKafka(libs, settings.data_dir / "kafka", port=settings.kafka_port,
                          fresh=not args.keep, security=security)
    kafka.start()
    try:
        ensure_topics(kafka.bootstrap, _topics(settings), kafka.client_config())
        write_broker_file(settings, kafka.bootstrap)
        if security is not None:
            print(f"millstream: SASL_SSL ({security.pki.ca_cert} is the CA to trust); users: "
                  f"{', '.join(security.users)}", file=sys.stderr)
        print(f"millstream: Kafka running at {kafka.bootstrap}; Ctrl-C stops it", file=sys.stderr)
        print(kafka.bootstrap, flush=True)
        while not stop.wait(1.0):
            if kafka.proc is None or kafka.proc.poll() is not None:
                print(f"millstream: the broker exited; see {kafka.log_path}", file=sys.stderr)
                return 1
    finally:
        broker_file(settings).unlink(missing_ok=True)
        kafka.stop()
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.simulator import FaultPlan, run_simulator
    from connectors.simulator.sparkplug_side import catalog_broker

    catalog = _catalog(settings)
    faults = (FaultPlan.parse(args.fault, catalog) if args.fault
              else FaultPlan.random(catalog, seed=args.seed))

    async def _main() -> None:
        await run_simulator(catalog, opcua_port=args.opcua_port, modbus_port=args.modbus_port,
                            seed=args.seed, faults=faults, stop=_async_stop_event(),
                            mqtt_broker=args.mqtt_broker or catalog_broker(catalog))

    asyncio.run(_main())
    return 0


def cmd_connect(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.run import run_connector
    from connectors.spool import SpoolConfig, SpoolPolicy
    from millstream.stack.locate import resolve_bootstrap
    from schemas.opcua_pki import default_pki_dir

    catalog = _catalog(settings)
    catalog.source(args.source)  # names the known sources if this one is not
    bootstrap = resolve_bootstrap(settings)
    spool = None
    if settings.spool_enabled:
        spool = SpoolConfig(settings.spool_folder(args.source),
                            max_bytes=settings.spool_max_bytes,
                            segment_bytes=settings.spool_segment_bytes,
                            policy=SpoolPolicy(settings.spool_policy),
                            fsync_ms=settings.spool_fsync_ms)

    async def _main() -> dict[str, object]:
        return await run_connector(
            catalog, args.source, bootstrap=bootstrap, topics=_topics(settings),
            kafka_config=settings.kafka_client_config(), endpoint=args.endpoint,
            status_file=_path(args.status_file), frame_ms=args.frame_ms,
            frame_idle_ms=args.frame_idle_ms,
            stop=_async_stop_event(), pki_dir=default_pki_dir(settings.data_dir), spool=spool,
            health=settings.health(),
        )

    final = asyncio.run(_main())
    print(json.dumps(final), flush=True)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.keys import load_signer
    from millstream.stack.locate import resolve_bootstrap
    from streams.app import run_worker

    interval = (settings.checkpoint_interval_s if args.checkpoint_interval is None
                else args.checkpoint_interval)
    run_worker(_catalog(settings), bootstrap=resolve_bootstrap(settings),
               topics=_topics(settings), app_id=args.app_id,
               kafka_config=settings.kafka_client_config(),
               status_file=_path(args.status_file), loglevel=args.loglevel,
               signer=load_signer(settings, "streams"), health=settings.health(),
               guarantee=args.guarantee or settings.processing_guarantee,
               checkpoint_interval_s=interval, flush_on_stop=args.flush_on_stop,
               session_timeout_s=args.session_timeout or settings.worker_session_timeout_s)
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.query import endpoint_file_for
    from millstream.stack.locate import resolve_bootstrap
    from sinks.chclient import ClientOptions
    from sinks.run import run_sink

    stop = _stop_event_on_signals()
    final = run_sink(_catalog(settings), bootstrap=resolve_bootstrap(settings),
                     topics=_topics(settings), dsn=settings.dsn, group_id=args.group_id,
                     kafka_config=settings.kafka_client_config(),
                     query_endpoint_file=endpoint_file_for(settings.dsn),
                     status_file=_path(args.status_file), stop=stop,
                     client_options=ClientOptions.from_settings(settings),
                     ttl_days=settings.ttl_days(),
                     query_limits=(settings.query_max_execution_s, settings.query_max_rows),
                     health=settings.health())
    print(json.dumps(final, default=str), flush=True)
    return 0


def cmd_executor(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.locate import resolve_bootstrap
    from schemas.opcua_pki import default_pki_dir
    from sinks.executor import run_executor

    endpoints: dict[str, str] = {}
    for item in args.endpoint or []:
        name, sep, url = item.partition("=")
        if not sep:
            raise MillstreamError(f"--endpoint wants SOURCE=ENDPOINT, got {item!r}")
        endpoints[name] = url
    stop = _stop_event_on_signals()
    final = run_executor(_catalog(settings), bootstrap=resolve_bootstrap(settings),
                         topics=_topics(settings), endpoints=endpoints or None,
                         group_id=args.group_id, kafka_config=settings.kafka_client_config(),
                         status_file=_path(args.status_file), stop=stop,
                         pki_dir=default_pki_dir(settings.data_dir),
                         trusted_keys_dir=settings.trusted_keys_dir,
                         max_rate_per_setpoint=settings.executor_max_rate_per_setpoint,
                         max_rate_per_machine=settings.executor_max_rate_per_machine,
                         max_ttl_ms=int(settings.command_max_ttl_s * 1000),
                         dry_run=args.dry_run or settings.executor_dry_run,
                         health=settings.health())
    print(json.dumps(final, default=str), flush=True)
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.query import (
        QueryLimits,
        endpoint_file_for,
        format_csv,
        format_json,
        format_table,
        run_query,
    )
    from sinks.chclient import ClientOptions

    limits = QueryLimits(args.max_seconds or settings.query_max_execution_s,
                         args.max_rows or settings.query_max_rows)
    result = run_query(settings.dsn, args.sql, endpoint_file_for(settings.dsn),
                       timeout=limits.max_execution_s + 30, limits=limits,
                       options=ClientOptions.from_settings(settings))
    formatter = {"table": format_table, "csv": format_csv, "json": format_json}[args.format]
    print(formatter(result))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.demo import DemoOptions, run_demo

    summary = run_demo(settings, DemoOptions(duration=args.duration, seed=args.seed,
                                             faults=args.fault or [],
                                             dashboard=not args.no_dashboard))
    print(json.dumps(summary), flush=True)
    return 0 if summary.get("ok", True) else 1


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.bench import run_benchmark

    result = run_benchmark(args.name, settings, args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2), flush=True)
    return 0


# -- parser --------------------------------------------------------------------------------

def _version() -> str:
    """The installed distribution's version (pyproject.toml's), for ``--version``."""
    try:
        return importlib.metadata.version("millstream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"millstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("setup", cmd_setup, "fetch what the local stack needs (Kafka jars), once")
    p = add("kafka", cmd_kafka, "run the embedded Kafka broker in the foreground")
    p.add_argument("--keep", action="store_true", help="keep the broker's data from last time")

    p = add("simulate", cmd_simulate,
            "run the plant simulator (OPC-UA and Modbus servers, a Sparkplug B edge node)")
    p.add_argument("--opcua-port", type=int, default=4840)
    p.add_argument("--modbus-port", type=int, default=5020)
    p.add_argument("--mqtt-broker", metavar="HOST:PORT",
                   help="the MQTT broker the Sparkplug B edge node publishes to "
                        "(default: the catalog's Sparkplug source endpoint)")
    p.add_argument("--seed", type=int, default=7, help="seeds noise and the fault schedule")
    p.add_argument("--fault", action="append", metavar="KIND@MACHINE[/TAG]:START[+DURATION]",
                   help="inject this fault instead of the seeded schedule, e.g. overheat@cnc-01:20")

    p = add("connect", cmd_connect, "bridge one source of the catalog into Kafka")
    p.add_argument("source", help="source name from the catalog, e.g. opcua-sim")
    p.add_argument("--endpoint", help="override the catalog's endpoint for this source")
    p.add_argument("--frame-ms", type=int, default=200,
                   help="the longest a reading waits to be sent in a frame (ms)")
    p.add_argument("--frame-idle-ms", type=int, default=5,
                   help="send a frame once no reading came for this long (ms; 0: off)")
    p.add_argument("--status-file", help="write counters here every second (JSON)")

    p = add("worker", cmd_worker, "run a stream worker (Faust): windows, anomalies, rules")
    p.add_argument("--app-id", default="millstream-streams", help="consumer group / app id")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.add_argument("--status-file", help="write counters here every second (JSON)")
    p.add_argument("--guarantee", choices=["at_least_once", "exactly_once"], default=None,
                   help="processing guarantee (default: MILLSTREAM_PROCESSING_GUARANTEE, "
                   "at_least_once); exactly_once uses Kafka transactions")
    p.add_argument("--checkpoint-interval", type=float, default=None, metavar="SECONDS",
                   help="checkpoint each partition's state this often; 0: memory only "
                   "(default: MILLSTREAM_CHECKPOINT_INTERVAL_S, 5)")
    p.add_argument("--flush-on-stop", action="store_true",
                   help="close every open window when stopping (the end of a run, not a "
                   "restart: later readings of those windows are then late)")
    p.add_argument("--session-timeout", type=float, default=None, metavar="SECONDS",
                   help="a worker silent this long loses its partitions to the others "
                   "(default: MILLSTREAM_WORKER_SESSION_TIMEOUT_S, 30)")

    p = add("sink", cmd_sink, "write every topic to ClickHouse (and serve chDB queries)")
    p.add_argument("--group-id", default="millstream-sink")
    p.add_argument("--status-file", help="write counters here every second (JSON)")
    sink_migrate.add_arguments(p)

    p = add("executor", cmd_executor, "apply commands to the machines through the safety gateway")
    p.add_argument("--endpoint", action="append", metavar="SOURCE=ENDPOINT",
                   help="override a source's endpoint, e.g. opcua-sim=opc.tcp://127.0.0.1:4840/")
    p.add_argument("--status-file", help="write counters here every second (JSON)")
    p.add_argument("--dry-run", action="store_true",
                   help="check every command but write nothing (MILLSTREAM_EXECUTOR_DRY_RUN)")
    p.add_argument("--group-id", default="millstream-executor", help="Kafka consumer group")

    p = add("query", cmd_query, "run SQL against millstream's ClickHouse and print the result")
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop the query after this long "
                   "(default: MILLSTREAM_QUERY_MAX_EXECUTION_S)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="fail rather than return more rows (default: MILLSTREAM_QUERY_MAX_ROWS)")

    p = add("demo", cmd_demo, "run the whole platform live on the local stack")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run; default: until Ctrl-C")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fault", action="append", metavar="KIND@MACHINE[/TAG]:START[+DURATION]",
                   help="faults to inject (default: an overheat at 20 s, then seeded ones)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="do not start the dashboard (MILLSTREAM_DASHBOARD_PORT, default 8080)")

    p = add("bench", cmd_bench, "run one benchmark; the last stdout line is its JSON result")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="one JSON line (default: indented)")
    p.add_argument("--readings", type=int, default=None, help="workload size")
    p.add_argument("--tags", type=int, default=None,
                   help="ingest: OPC-UA tags; streams: plant tags (10000)")
    p.add_argument("--seconds", type=int, default=None,
                   help="ingest: seconds per run; streams: at most per peer run (60)")
    p.add_argument("--changes", type=int, default=None,
                   help="latency: value changes that breach a limit (200)")
    p.add_argument("--peer-readings", type=int, default=None,
                   help="streams: readings for the per-reading peers (500000)")
    p.add_argument("--interval-ms", type=int, default=None,
                   help="streams: how often each tag is sampled (100)")
    p.add_argument("--data", default=None,
                   help="dataset directory (nab: default ../shared/datasets/NAB)")
    p.add_argument("--hours", type=float, default=None,
                   help="alarms: simulated hours (8; at least 0.22)")
    p.add_argument("--seed", type=int, default=None,
                   help="alarms: seed of the fault schedule and the plant (7)")

    for module in commands.MODULES:
        module.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Handler = args.func
    try:
        return func(args, load_settings())
    except MillstreamError as exc:
        print(f"millstream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
