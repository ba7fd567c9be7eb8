"""Modbus half of ``millstream bench ingest``: coalesced block reads vs one register a read.

One pymodbus server process serves the catalog's Modbus machines. The connector polls
them as fast as its poll allows (``interval_ms`` 10) for ``seconds``; the registers its
GOOD readings carry, by poll time, come back from Kafka. Then a bare pymodbus client
reads the same registers one per request for as long.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from millstream.bench._proc import LineChild, cpu_seconds, say
from millstream.bench.broker import BenchKafka
from millstream.bench.ingest_catalog import MODBUS_SOURCE
from millstream.bench.ingest_connector import ConnectorUnderTest
from millstream.bench.ingest_count import ModbusTally, read_topic
from schemas.catalog import Catalog

__all__ = ["measure_modbus"]

WARMUP_S = 1.0


def _widths(catalog: Catalog) -> dict[str, int]:
    return {path: info.spec.modbus.width for path, info in catalog.tags().items()
            if info.source.name == MODBUS_SOURCE and info.spec.modbus is not None}


def _connector_run(catalog: Catalog, k: BenchKafka, topic: str, seconds: float, work: Path,
                   env: dict[str, str]) -> dict[str, Any]:
    conn = ConnectorUnderTest(MODBUS_SOURCE, work, env)
    try:
        conn.start()
        conn.wait_for("connecting", lambda s: bool(s.get("connected"))
                      and int(s.get("produced") or 0) > 0, timeout=120)
        time.sleep(WARMUP_S)
        start = time.time()
        cpu0 = cpu_seconds(conn.pid) or 0.0
        while (left := start + seconds - time.time()) > 0:
            time.sleep(min(left, 5.0))
            say(f"  {time.time() - start:.0f}s of {seconds:.0f}s: "
                     f"{conn.produced():,} readings produced")
        end = time.time()
        usage = conn.usage()
    finally:
        final = conn.stop()
    say(f"connector stopped; reading {topic} back ...")
    tally = ModbusTally(_widths(catalog))
    read_topic(k.bootstrap, topic, tally.add, k.conf)
    got = tally.window(int(start * 1000), int(end * 1000))
    return {"seconds": end - start, **got, "tally": tally, "final": final,
            "peak_rss_mb": usage["peak_rss_mb"],
            "cpu_share": round(((usage["cpu_s"] or 0.0) - cpu0) / (end - start), 3)}


def measure_modbus(catalog: Catalog, catalog_path: Path, k: BenchKafka, topic: str, port: int,
                   seconds: float, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Both runs against one server process; the Modbus figures of the result."""
    widths = _widths(catalog)
    server = LineChild("modbus-server", "millstream.bench._modbus_server",
                       ["--catalog", str(catalog_path), "--source", MODBUS_SOURCE,
                        "--port", str(port)], work / "modbus-server.log")
    try:
        server.start()
        ready = server.expect("ready", timeout=120)
        say(f"Modbus server up ({ready['devices']} devices, {sum(widths.values()):,} "
                 f"registers); connector for {seconds:.0f}s ...")
        conn = _connector_run(catalog, k, topic, seconds, work, env)
        say(f"connector: {conn['registers'] / conn['seconds']:,.0f} registers/s; "
                 f"one register per request for {seconds:.0f}s ...")
        bare = LineChild("modbus-bare", "millstream.bench._modbus_bare",
                         ["--catalog", str(catalog_path), "--source", MODBUS_SOURCE,
                          "--endpoint", ready["endpoint"], "--seconds", str(seconds)],
                         work / "modbus-bare.log")
        try:
            bare.start()
            bare.expect("ready", timeout=60)
            base = bare.expect("done", timeout=seconds + 60)
        finally:
            bare.stop()
    finally:
        server.stop()
    tally: ModbusTally = conn["tally"]
    per_s = round(conn["registers"] / conn["seconds"]) if conn["seconds"] > 0 else None
    base_per_s = base["per_s"]
    return {
        "modbus_registers_per_s": per_s,
        "modbus_per_register_baseline_per_s": base_per_s,
        "modbus_speedup": round(per_s / base_per_s, 1) if per_s and base_per_s else None,
        "modbus_registers_per_poll": sum(widths.values()),
        "modbus_readings_per_s": round(conn["readings"] / conn["seconds"]),
        "modbus_seconds": round(conn["seconds"], 2),
        "modbus_bad_readings": tally.bad,
        "modbus_seq_gaps": tally.seq.gaps,
        "modbus_baseline_errors": base["errors"],
        "modbus_connector_status": {key: conn["final"].get(key) for key in
                                    ("produced", "delivered", "failed", "errors", "last_error")},
        "modbus_connector_cpu_share": conn["cpu_share"],
        "modbus_connector_peak_rss_mb": conn["peak_rss_mb"] and round(conn["peak_rss_mb"], 1),
    }
