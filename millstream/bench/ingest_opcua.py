"""OPC-UA half of ``millstream bench ingest``: N tags at 1 Hz, connector vs bare asyncua.

One server process changes every tag once per second. First the connector runs against
it for ``seconds`` (its frames read back from Kafka say which changes arrived, per tag,
and whether the sequence numbers have gaps), then a bare asyncua client that only counts
notifications runs for as many seconds against the same server. Never both at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from millstream.bench._proc import LineChild, cpu_seconds, say
from millstream.bench.broker import BenchKafka
from millstream.bench.ingest_catalog import OPCUA_SOURCE
from millstream.bench.ingest_connector import ConnectorUnderTest
from millstream.bench.ingest_count import OpcUaTally, read_topic
from schemas.catalog import Catalog

__all__ = ["measure_opcua"]

QUIET_S = 3.0  # a drain is over when nothing new arrived for this long


def _chunk() -> int:
    """The connector's subscription size, so the baseline subscribes the same way."""
    from connectors import opcua

    return int(getattr(opcua, "CHUNK", 1000))


def _rate(count: int, start: float, end: float, last_at: float) -> float | None:
    """Changes per second over the run: from the first write to the later of the last
    write and the last change handled (a client that falls behind takes longer)."""
    seconds = max(end, last_at) - start
    return round(count / seconds, 1) if seconds > 0 else None


def _run_server(server: LineChild, rounds: int, progress_of: Callable[[], str]) -> dict[str, Any]:
    """Tell the server to run ``rounds`` seconds of changes; its ``done`` report."""
    server.send(cmd="run", rounds=rounds)
    t0 = time.monotonic()
    while (done := server.poll("done", timeout=10)) is None:
        say(f"  {time.monotonic() - t0:.0f}s of {rounds}s: {progress_of()}")
        if time.monotonic() - t0 > rounds * 3 + 60:
            server.expect("done", timeout=1)  # raises, naming the server and its log
    return done


def _connector_run(catalog: Catalog, k: BenchKafka, server: LineChild, topic: str, tags: int,
                   seconds: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    conn = ConnectorUnderTest(OPCUA_SOURCE, work, env)
    try:
        conn.start()
        took = conn.wait_for("subscribing", lambda s: bool(s.get("connected"))
                             and int(s.get("produced") or 0) >= tags, timeout=120 + tags / 50)
        say(f"connector subscribed to {tags:,} tags in {took:.1f}s; "
                 f"{seconds}s of changes ...")
        cpu0, server_cpu0 = cpu_seconds(conn.pid) or 0.0, cpu_seconds(server.pid) or 0.0
        done = _run_server(server, seconds, lambda: f"{conn.produced():,} readings produced")
        drain = conn.settle(tags + done["writes"], QUIET_S, timeout=max(60.0, seconds))
        usage = conn.usage()
        server_cpu = (cpu_seconds(server.pid) or 0.0) - server_cpu0
    finally:
        final = conn.stop()
    say(f"connector stopped after a {drain:.1f}s drain; reading {topic} back ...")
    paths = [p for p in catalog.tags() if catalog.tags()[p].source.name == OPCUA_SOURCE]
    tally = OpcUaTally(paths, done["first"], done["last"])
    read_topic(k.bootstrap, topic, tally.add, k.conf)
    run_s = done["end"] - done["start"]
    return {
        "done": done, "tally": tally, "final": final,
        "peak_rss_mb": usage["peak_rss_mb"],
        "cpu_share": round(((usage["cpu_s"] or 0.0) - cpu0) / run_s, 3),
        "server_cpu_share": round(server_cpu / run_s, 3),
        "per_s": _rate(tally.distinct, done["start"], done["end"],
                       tally.last_created_ms / 1000),
    }


def _bare_run(catalog_path: Path, server: LineChild, endpoint: str, seconds: int, first: int,
              work: Path) -> dict[str, Any]:
    bare = LineChild("opcua-bare", "millstream.bench._opcua_bare",
                     ["--catalog", str(catalog_path), "--source", OPCUA_SOURCE,
                      "--endpoint", endpoint, "--chunk", str(_chunk()),
                      "--first", str(first), "--last", str(first + seconds - 1)],
                     work / "opcua-bare.log")
    try:
        bare.start()
        ready = bare.expect("ready", timeout=300)
        say(f"bare asyncua client subscribed in {ready['subscribe_s']}s "
                 f"({ready['initial']:,} initial values); {seconds}s of changes ...")
        cpu0, server_cpu0 = cpu_seconds(bare.pid) or 0.0, cpu_seconds(server.pid) or 0.0

        def in_range() -> int:
            bare.send(cmd="count")
            return int(bare.expect("count", timeout=30)["in_range"])

        done = _run_server(server, seconds, lambda: f"{in_range():,} notifications counted")
        t0 = last_change = time.monotonic()
        last = in_range()
        while last < done["writes"] and time.monotonic() - last_change < QUIET_S:
            if time.monotonic() - t0 > max(60.0, seconds):
                break
            time.sleep(0.25)
            if (now := in_range()) != last:
                last, last_change = now, time.monotonic()
        cpu = (cpu_seconds(bare.pid) or 0.0) - cpu0
        server_cpu = (cpu_seconds(server.pid) or 0.0) - server_cpu0
        bare.send(cmd="stop")
        counts = bare.expect("done", timeout=30)
    finally:
        bare.stop()
    return {"done": done, "counts": counts,
            "cpu_share": round(cpu / (done["end"] - done["start"]), 3),
            "server_cpu_share": round(server_cpu / (done["end"] - done["start"]), 3),
            "per_s": _rate(counts["in_range"], done["start"], done["end"], counts["last_at"])}


@contextlib.contextmanager
def _server(catalog_path: Path, port: int, tags: int, work: Path,
            run: str) -> Iterator[tuple[LineChild, dict[str, Any]]]:
    """A fresh server process per run, so nothing a client left behind (an orphaned
    session after a reconnect keeps its subscriptions for the session timeout) weighs on
    the next run."""
    server = LineChild("opcua-server", "millstream.bench._opcua_server",
                       ["--catalog", str(catalog_path), "--source", OPCUA_SOURCE,
                        "--port", str(port)], work / f"opcua-server-{run}.log")
    try:
        server.start()
        ready = server.expect("ready", timeout=120 + tags / 100)
        say(f"OPC-UA server up with {ready['tags']:,} tags in {ready['build_s']}s")
        yield server, ready
    finally:
        server.stop()


def measure_opcua(catalog: Catalog, catalog_path: Path, k: BenchKafka, topic: str, port: int,
                  tags: int, seconds: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The connector's run, then the bare client's; the OPC-UA figures of the result."""
    with _server(catalog_path, port, tags, work, "connector") as (server, _):
        conn = _connector_run(catalog, k, server, topic, tags, seconds, work, env)
    with _server(catalog_path, port, tags, work, "bare") as (server, ready):
        bare = _bare_run(catalog_path, server, ready["endpoint"], seconds, 1, work)
    tally: OpcUaTally = conn["tally"]
    writes = conn["done"]["writes"]
    per_s, bare_per_s = conn["per_s"], bare["per_s"]
    return {
        "opcua_tags": tags,
        "opcua_readings_per_s": per_s,
        "opcua_lost": writes - tally.distinct,
        "opcua_vs_bare": round(per_s / bare_per_s, 3) if per_s and bare_per_s else None,
        "opcua_seconds": round(conn["done"]["end"] - conn["done"]["start"], 2),
        "opcua_server_changes": writes,
        "opcua_readings": tally.distinct,
        "opcua_duplicates": tally.duplicates,
        "opcua_seq_gaps": tally.seq.gaps,
        "opcua_seq_repeats": tally.seq.repeats,
        "opcua_bad_readings": tally.bad,
        "opcua_missing_by_round": tally.missing_by_round(),
        "opcua_latency_ms": tally.latency(),
        "opcua_server_behind_s": conn["done"]["behind_s"],
        "opcua_server_loop_lag_s": {"connector_run": conn["done"].get("loop_lag_s"),
                                    "bare_run": bare["done"].get("loop_lag_s")},
        "opcua_connector_status": {key: conn["final"].get(key) for key in
                                   ("produced", "delivered", "failed", "errors", "last_error")},
        "opcua_connector_cpu_share": conn["cpu_share"],
        "opcua_server_cpu_share": {"connector_run": conn["server_cpu_share"],
                                   "bare_run": bare["server_cpu_share"]},
        "opcua_bare_per_s": bare_per_s,
        "opcua_bare_notifications": bare["counts"]["in_range"],
        "opcua_bare_lost": bare["done"]["writes"] - bare["counts"]["in_range"],
        "opcua_bare_cpu_share": bare["cpu_share"],
        "opcua_bare_latency_ms": bare["counts"]["latency_ms"],
        "connector_peak_rss_mb": conn["peak_rss_mb"] and round(conn["peak_rss_mb"], 1),
    }
