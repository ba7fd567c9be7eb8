"""``run_sink``: the sink process's main function (the CLI wires signals to ``stop``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schemas.catalog import Catalog
from schemas.health import HealthConfig, KafkaProbe, StageHealth
from schemas.topics import Topics
from sinks.base import BatchPolicy
from sinks.chclient import ClientOptions, open_client, redact_dsn
from sinks.clickhouse import ClickHouseSink
from sinks.query_server import QueryServer, chdb_path, endpoint_file_for

__all__ = ["run_sink"]

logger = logging.getLogger(__name__)


def run_sink(
    catalog: Catalog,
    *,
    bootstrap: str,
    topics: Topics,
    dsn: str,
    group_id: str = "millstream-sink",
    kafka_config: dict[str, str] | None = None,
    query_endpoint_file: Path | None = None,
    status_file: Path | None = None,
    stop: threading.Event | None = None,
    policy: BatchPolicy | None = None,
    client_options: ClientOptions | None = None,
    ttl_days: Mapping[str, int] | None = None,
    query_limits: tuple[float, int] = (60.0, 100_000),
    health: HealthConfig | None = None,
) -> dict[str, Any]:
    """Store every topic in ClickHouse until ``stop`` is set; then drain, commit, close.

    The sink migrates the schema and, with ``ttl_days``, sets the tables' TTLs. For a
    ``chdb://`` DSN this process owns the directory, so it also serves read-only queries
    on loopback (with ``query_limits``: max seconds, max rows) and advertises them in
    ``query_endpoint_file`` (default: :func:`endpoint_file_for` the DSN). The queries use
    a chDB connection of their own, so a long query does not hold up inserts.
    ``health`` serves /healthz, /readyz (Kafka, inserts not failing) and /metrics, from
    before the migrations on. Returns the final status.
    """
    stop = stop or threading.Event()
    monitor = StageHealth("sink", health, kafka=KafkaProbe(bootstrap, kafka_config),
                          ready=_inserting)
    with monitor:
        return _run(monitor, catalog, bootstrap=bootstrap, topics=topics, dsn=dsn,
                    group_id=group_id, kafka_config=kafka_config, policy=policy,
                    status_file=status_file, client_options=client_options,
                    ttl_days=ttl_days, stop=stop, query_endpoint_file=query_endpoint_file,
                    query_limits=query_limits)


def _inserting(doc: Mapping[str, Any]) -> str | None:
    """/readyz: no insert into ClickHouse is failing."""
    if not doc.get("insert_failing"):
        return None
    return (f"inserts into ClickHouse are failing (the sink retries): {doc.get('last_error')}; "
            "check that ClickHouse runs and MILLSTREAM_CLICKHOUSE_* is right")


def _run(monitor: StageHealth, catalog: Catalog, *, bootstrap: str, topics: Topics,
         dsn: str, stop: threading.Event, query_endpoint_file: Path | None,
         query_limits: tuple[float, int], **options: Any) -> dict[str, Any]:
    sink = ClickHouseSink(catalog, bootstrap=bootstrap, topics=topics, dsn=dsn,
                          health=monitor, **options)
    group_id = options["group_id"]
    server: QueryServer | None = None
    try:
        if chdb_path(dsn) is not None:
            endpoint = query_endpoint_file or endpoint_file_for(dsn)
            server = QueryServer(open_client(dsn, shared=True), threading.Lock(), dsn=dsn,
                                 endpoint_file=endpoint, max_execution_s=query_limits[0],
                                 max_rows=query_limits[1], owns_client=True)
            sink.query_url = server.start()
        logger.info("sink: %s -> %s (group %s)", ", ".join(topics.all()), redact_dsn(dsn),
                    group_id)
        sink.write_status()
        sink.run(stop)
    finally:
        if server is not None:
            server.stop()
        sink.close()
    final = sink.status(running=False)
    sink.write_status(running=False)
    logger.info("sink stopped: inserted %s, dead-lettered %d, insert errors %d",
                final["inserted"], final["deadlettered"], final["insert_errors"])
    return final
