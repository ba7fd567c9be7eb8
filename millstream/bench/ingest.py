"""``millstream bench ingest``: the edge connectors against real servers and a real Kafka.

OPC-UA: N tags (default 10,000) change once per second for ``seconds`` (default 60) on an
asyncua server; ``millstream connect`` bridges them into Kafka, and what arrives is
checked change by change (lost, duplicated, sequence gaps). The baseline is a bare
asyncua subscription to the same nodes that only counts. Modbus: registers/s through the
connector's coalesced block reads against one register per request with pymodbus, from
the same server. Every part runs as its own process, one measurement at a time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from millstream.bench._proc import say
from millstream.bench.broker import BenchKafka, bench_kafka
from millstream.bench.ingest_catalog import write_catalog
from millstream.bench.ingest_modbus import measure_modbus
from millstream.bench.ingest_opcua import measure_opcua
from millstream.bench.wire import _sigterm_as_interrupt
from millstream.settings import Settings
from millstream.stack.kafka import free_port
from schemas.catalog import load_catalog
from schemas.exceptions import MillstreamError
from schemas.topics import Topics

__all__ = ["DEFAULT_SECONDS", "DEFAULT_TAGS", "TARGETS", "run"]

DEFAULT_TAGS = 10_000
DEFAULT_SECONDS = 60
MODBUS_SECONDS = 10.0
# the targets: name -> (key, comparison, bound)
TARGETS: dict[str, tuple[str, str, float]] = {
    "opcua_lost_zero": ("opcua_lost", "<=", 0),
    "opcua_vs_bare_0_9": ("opcua_vs_bare", ">=", 0.9),
    "modbus_100k_registers_per_s": ("modbus_registers_per_s", ">=", 100_000),
    "connector_rss_500_mib": ("connector_peak_rss_mb", "<=", 500),
    "mqtt_50k_readings_per_s": ("mqtt_readings_per_s", ">=", 50_000),
}
MQTT_READINGS = 300_000


def _met(result: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for name, (key, op, bound) in TARGETS.items():
        value = result.get(key)
        out[name] = None if value is None else value <= bound if op == "<=" else value >= bound
    return out


def run(settings: Settings, tags: int | None = None, seconds: int | None = None, *,
        modbus_seconds: float | None = None, interval_ms: int = 200, modbus_machines: int = 10,
        modbus_span: int = 1000, mqtt_readings: int = MQTT_READINGS) -> dict[str, Any]:
    """The whole benchmark; its JSON-ready result with the issue's figures first, then
    Sparkplug B DDATA through Mosquitto into one connector (:mod:`millstream.bench.mqtt`)."""
    n = DEFAULT_TAGS if tags is None else tags
    secs = DEFAULT_SECONDS if seconds is None else seconds
    if n < 1 or secs < 1:
        raise MillstreamError(f"--tags and --seconds must be at least 1, got {n} and {secs}")
    mb_secs = modbus_seconds if modbus_seconds is not None else min(MODBUS_SECONDS, secs)
    load = os.getloadavg()[0]
    prefix = f"millstream-bench-ingest-{os.getpid()}-{int(time.time())}"
    # the catalog, each process's log and the connectors' status files stay for a look after
    work = settings.data_dir / "bench" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    say(f"run folder (logs, catalog, status files): {work}")
    with _sigterm_as_interrupt(), bench_kafka(settings) as k:
        try:
            out = _measure(settings, k, work, prefix, n, secs, mb_secs, interval_ms,
                           modbus_machines, modbus_span)
        finally:
            if settings.kafka_bootstrap:
                k.delete_created(prefix)
    if mqtt_readings > 0:
        from millstream.bench import mqtt

        say(f"MQTT: {mqtt_readings:,} Sparkplug B readings through Mosquitto ...")
        m = mqtt.run(mqtt_readings)
        out.update(mqtt_readings_per_s=m["mqtt_readings_per_s"],
                   mqtt_bare_per_s=m["baseline_bare_paho_decode_readings_per_s"],
                   mqtt_lost=m["lost"])
    out["targets_met"] = _met(out)
    out["run_dir"] = str(work)
    out["kafka"] = k.description
    out["cpus"] = os.cpu_count()
    out["loadavg_1m"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
    return out


def _measure(settings: Settings, k: BenchKafka, work: Path, prefix: str, tags: int,
             seconds: int, modbus_seconds: float, interval_ms: int, modbus_machines: int,
             modbus_span: int) -> dict[str, Any]:
    opcua_port, modbus_port = free_port(), free_port()
    catalog_path = write_catalog(
        work / "catalog.yaml", opcua_tags=tags, interval_ms=interval_ms,
        opcua_endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/bench/",
        modbus_machines=modbus_machines, modbus_span=modbus_span,
        modbus_endpoint=f"127.0.0.1:{modbus_port}")
    catalog = load_catalog(catalog_path)
    topics = {kind: Topics(f"{prefix}-{kind}") for kind in ("opcua", "modbus")}
    k.create_topics([t.readings for t in topics.values()])

    def env(kind: str) -> dict[str, str]:
        return {"MILLSTREAM_CATALOG": str(catalog_path),
                **settings.kafka_env(),  # TLS/SASL, with the CA resolved to a file
                "MILLSTREAM_KAFKA_BOOTSTRAP": k.bootstrap,
                "MILLSTREAM_TOPIC_PREFIX": topics[kind].prefix,
                "MILLSTREAM_DATA_DIR": str(work / "data")}

    say(f"OPC-UA: {tags:,} tags at 1 Hz for {seconds}s, connector then bare asyncua")
    opcua = measure_opcua(catalog, catalog_path, k, topics["opcua"].readings, opcua_port, tags,
                          seconds, work, env("opcua"))
    say(f"OPC-UA: connector {opcua['opcua_readings_per_s']} readings/s, lost "
             f"{opcua['opcua_lost']}; bare {opcua['opcua_bare_per_s']}/s")
    say(f"Modbus: connector then one register per request, {modbus_seconds:.0f}s each")
    modbus = measure_modbus(catalog, catalog_path, k, topics["modbus"].readings, modbus_port,
                            modbus_seconds, work, env("modbus"))
    first = ("opcua_tags", "opcua_readings_per_s", "opcua_lost", "opcua_vs_bare",
             "modbus_registers_per_s", "modbus_per_register_baseline_per_s", "modbus_speedup")
    both = {**opcua, **modbus}
    return {"benchmark": "ingest", **{key: both.pop(key) for key in first}, **both,
            "opcua_interval_ms": interval_ms}
