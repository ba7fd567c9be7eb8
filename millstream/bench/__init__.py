"""Benchmarks as commands: ``millstream bench NAME`` runs one and returns its figures.

Each benchmark measures millstream's figure and its baseline side by side in the same run,
against real parts on loopback, and returns one JSON-ready dict (the CLI prints it last).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from millstream.settings import Settings
from schemas.exceptions import MillstreamError

__all__ = ["BENCHMARKS", "UnknownBenchmark", "run_benchmark"]

logger = logging.getLogger(__name__)

Benchmark = Callable[[Settings, argparse.Namespace], dict[str, Any]]


def _wire(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import wire

    return wire.run(settings, getattr(args, "readings", None))


def _streams(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import streams

    return streams.run(settings, getattr(args, "readings", None), getattr(args, "tags", None),
                       getattr(args, "peer_readings", None), getattr(args, "seconds", None),
                       getattr(args, "interval_ms", None))


def _processing(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import processing
    from schemas.catalog import load_catalog

    readings = getattr(args, "readings", None)
    return processing.run(load_catalog(settings.catalog),
                          n_frames=max(1, (readings or 300_000) // 1000))


def _ingest(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import ingest

    return ingest.run(settings, getattr(args, "tags", None), getattr(args, "seconds", None))


def _sink(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import sink

    return sink.run(settings, getattr(args, "readings", None))


def _mqtt(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import mqtt

    return mqtt.run(getattr(args, "readings", None))


def _nab(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import nab

    return nab.run(getattr(args, "data", None))


def _spool(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import spool

    return spool.run(settings, getattr(args, "readings", None))


def _latency(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import latency

    return latency.run(settings, getattr(args, "changes", None))


def _state(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import state

    return state.run(settings, getattr(args, "tags", None), getattr(args, "readings", None))


def _alarms(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from millstream.bench import alarms
    from schemas.catalog import load_catalog

    return alarms.run(load_catalog(settings.catalog), getattr(args, "hours", None),
                      getattr(args, "seed", None))


BENCHMARKS: dict[str, tuple[Benchmark, str]] = {
    "wire": (_wire, "readings wire format: frames vs one message per reading, Faust vs raw"),
    "streams": (_streams, "the streams worker on Kafka at 10,000 tags vs a bare consume+decode "
                          "loop, Quix Streams, a naive Faust table, and itself exactly-once"),
    "processing": (_processing,
                   "stream logic without Kafka: vectorised windows vs a per-reading loop"),
    "ingest": (_ingest, "edge connectors: OPC-UA tags at 1 Hz vs bare asyncua, Modbus block "
                        "reads vs one register per request"),
    "sink": (_sink, "ClickHouse sink end to end from Kafka vs a raw columnar chDB insert"),
    "mqtt": (_mqtt,
             "Sparkplug B DDATA through Mosquitto into one connector vs a bare paho decode"),
    "nab": (_nab, "Numenta Anomaly Benchmark: the streaming detectors vs a windowed Gaussian"),
    "spool": (_spool, "connector disk spool: write and replay readings/s vs a direct produce"),
    "latency": (_latency, "a limit breach at the simulator to its command result on Kafka "
                          "(fast path) and to its anomaly (window path), under load"),
    "state": (_state, "stream worker with checkpoints (at-least-once, exactly-once) vs state "
                      "in memory only"),
    "alarms": (_alarms, "seeded faults of every kind in the simulated plant, faster than real "
                        "time: alarm episodes vs the raw anomaly records"),
}


class UnknownBenchmark(MillstreamError):
    """No benchmark has this name; ``known`` lists the ones that exist."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"there is no benchmark {name!r}; known benchmarks: "
                         f"{', '.join(known)} (run 'millstream bench NAME --json')")
        self.name = name
        self.known = known


def run_benchmark(name: str, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark called ``name``; its result as a JSON-ready dict."""
    entry = BENCHMARKS.get(name)
    if entry is None:
        raise UnknownBenchmark(name, sorted(BENCHMARKS))
    func, _ = entry
    return func(settings, args)
