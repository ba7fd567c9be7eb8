"""Health and metrics of one stage process: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``.

Every long-running stage (connector, streams worker, sink, executor) makes one
:class:`StageHealth`, hands it its status document every second (:meth:`StageHealth.report`,
the same dict its status file holds) and observes a few histograms where the work happens.
A small threaded HTTP server answers from the last report, so a probe or a scrape never
touches the stage's own objects:

- ``/healthz``: 200 while the process is alive and its loop reports (503 once it has not
  reported for ``stall_s``: a stuck loop, which a liveness probe should restart);
- ``/readyz``: 200 when Kafka answers and the stage's own check passes (its device, its
  database); else 503 with ``{"ready": false, "reason": ...}`` naming what is away;
- ``/metrics``: Prometheus text from the process's own ``CollectorRegistry``
  (:mod:`schemas.metrics`, plus ``process_*``);
- ``/status``: the last status document, as JSON (``millstream status`` reads it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from schemas.exceptions import MillstreamError
from schemas.health_kafka import KafkaProbe
from schemas.metrics import METRICS, samples, spec

__all__ = ["HealthConfig", "HealthError", "KafkaProbe", "StageHealth"]

logger = logging.getLogger(__name__)

disable_created_metrics()  # no *_created series: Prometheus' text format does not need them

ReadyCheck = Callable[[Mapping[str, Any]], str | None]  # None: ready, else why not


class HealthError(MillstreamError):
    """The health endpoint cannot be served (its port is taken, its address is wrong)."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Where a stage serves its endpoints: ``port`` None serves nothing, 0 any free port
    (the status document then names it in ``metrics_url``); ``host`` is the bind address
    (loopback by default; 0.0.0.0 in a container, which the Helm chart sets)."""

    port: int | None = None
    host: str = "127.0.0.1"


_BUCKETS: dict[str, tuple[float, ...]] = {
    "millstream_frame_readings": (1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
    "millstream_process_seconds": (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
                                   30),
    "millstream_insert_rows": (1, 10, 100, 1000, 5000, 10_000, 50_000, 100_000),
    "millstream_insert_seconds": (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                  10),
}


class StageHealth:
    """Lifecycle: construct, :meth:`start` (binds and serves on a daemon thread, when a
    port is configured), :meth:`report` every second, :meth:`stop`; or ``with``.

    ``stage`` is the ``stage`` label; ``context`` holds labels the status document lacks
    (``source``, ``topic``: the stage's input topic); ``kafka`` probes the cluster;
    ``ready`` checks the last status document for the stage's own dependency.
    """

    def __init__(self, stage: str, config: HealthConfig | None = None, *,
                 kafka: KafkaProbe | None = None, ready: ReadyCheck | None = None,
                 context: Mapping[str, str] | None = None, stale_s: float = 15.0,
                 stall_s: float = 120.0) -> None:
        self.stage, self.config = stage, config or HealthConfig()
        self.kafka, self.ready_check = kafka, ready
        self.context = dict(context or {})
        self.stale_s, self.stall_s = stale_s, stall_s
        self.started = time.monotonic()
        self._doc: dict[str, Any] | None = None
        self._doc_at: tuple[float, float] | None = None  # monotonic, wall clock
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_StatusCollector(self))
        self.histograms = {name: Histogram(name, spec(name).help, list(spec(name).labels),
                                           registry=self.registry, buckets=buckets)
                           for name, buckets in _BUCKETS.items() if stage in spec(name).stages}
        self._children: dict[tuple[str, str], Histogram] = {}  # labels() is slow: kept

    # -- what a stage calls ------------------------------------------------------------------
    def report(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Keep ``doc`` as the stage's current status; returns it with ``stage`` and, while
        serving, ``metrics_url`` added (write that to the status file)."""
        out = {"stage": self.stage, **doc}
        if self.url is not None:
            out["metrics_url"] = self.url
        with self._lock:
            self._doc, self._doc_at = out, (time.monotonic(), time.time())
        return out

    def observe_frame(self, readings: int, source: str = "") -> None:
        self._observe("millstream_frame_readings", readings, source)

    def observe_process(self, seconds: float, topic: str = "") -> None:
        self._observe("millstream_process_seconds", seconds, topic)

    def observe_insert(self, table: str, rows: int, seconds: float) -> None:
        self._observe("millstream_insert_rows", rows, table)
        self._observe("millstream_insert_seconds", seconds, table)

    def _observe(self, name: str, value: float, label: str) -> None:
        child = self._children.get((name, label))
        if child is None:
            hist = self.histograms.get(name)  # only the stage's own: see schemas.metrics
            if hist is None:
                return
            child = self._children[(name, label)] = hist.labels(self.stage, label)
        child.observe(value)

    # -- what the endpoints answer -----------------------------------------------------------
    def last(self) -> tuple[dict[str, Any] | None, float | None, float | None]:
        """The last document, its age in seconds and when it was reported (Unix s)."""
        with self._lock:
            doc, at = self._doc, self._doc_at
        if at is None:
            return doc, None, None
        return doc, time.monotonic() - at[0], at[1]

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        _doc, age, _at = self.last()
        body: dict[str, Any] = {"stage": self.stage, "pid": os.getpid(),
                                "uptime_s": round(time.monotonic() - self.started, 1)}
        if age is not None and age > self.stall_s:
            return False, {**body, "alive": False, "reason": (
                f"the {self.stage} loop has not reported for {age:.0f} s (more than "
                f"{self.stall_s:.0f} s): it is stuck; restart the process and read its log")}
        return True, {**body, "alive": True}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, str] = {}
        doc, age, _at = self.last()
        if doc is None:
            checks["stage"] = f"the {self.stage} has not reported yet (starting)"
        elif age is not None and age > self.stale_s:
            checks["stage"] = (f"the {self.stage} has not reported for {age:.0f} s; its loop "
                               "is stuck or busy, see its log")
        elif doc.get("running") is False:
            checks["stage"] = f"the {self.stage} is stopping"
        else:
            checks["stage"] = "ok"
            if self.ready_check is not None:
                checks["dependency"] = self.ready_check(doc) or "ok"
        if self.kafka is not None:
            checks["kafka"] = self.kafka.check() or "ok"
        reasons = [v for v in checks.values() if v != "ok"]
        body: dict[str, Any] = {"stage": self.stage, "ready": not reasons, "checks": checks}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return not reasons, body

    # -- the server --------------------------------------------------------------------------
    def start(self) -> str | None:
        """Serve the endpoints (nothing when no port is configured); returns the base URL."""
        port, host = self.config.port, self.config.host
        if port is None or self._httpd is not None:
            return self.url
        server = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self._httpd = server((host, port), _Handler)
        except OSError as exc:
            raise HealthError(
                f"the {self.stage} cannot serve /healthz, /readyz and /metrics on "
                f"{host}:{port}: {exc.strerror or exc}; set MILLSTREAM_METRICS_PORT to a free "
                "port (0: any free port; unset: no endpoints) or MILLSTREAM_METRICS_HOST to "
                "an address of this machine") from exc
        self._httpd.daemon_threads = True
        self._httpd.stage_health = self  # type: ignore[attr-defined]
        bound = self._httpd.server_address[1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
        self.url = f"http://[{shown}]:{bound}" if ":" in shown else f"http://{shown}:{bound}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"{self.stage}-health", daemon=True)
        self._thread.start()
        logger.info("%s: /healthz, /readyz and /metrics on %s:%d", self.stage, host, bound)
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.kafka is not None:
            self.kafka.close()

    def __enter__(self) -> StageHealth:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _StatusCollector(Collector):
    """Counters and gauges from the last status document, at scrape time."""

    def __init__(self, health: StageHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        doc, _age, at = self.health.last()
        if doc is None:
            return
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, labels, value in samples(self.health.stage, doc, self.health.context, at):
            m = spec(name)
            fam = families.get(name)
            if fam is None:
                kind = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
                fam = families[name] = kind(name, m.help, labels=list(m.labels))
            fam.add_metric([labels.get(k, "") for k in m.labels], value)
        order = {m.name: i for i, m in enumerate(METRICS)}
        yield from sorted(families.values(), key=lambda f: order.get(_full(f), 0))


def _full(fam: Metric) -> str:
    return f"{fam.name}_total" if fam.type == "counter" else fam.name


class _Handler(BaseHTTPRequestHandler):
    server_version = "millstream-health/1"

    def do_GET(self) -> None:
        health: StageHealth = self.server.stage_health  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                self._json(*health.liveness())
            elif path == "/readyz":
                self._json(*health.readiness())
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(health.registry), content_type)
            elif path == "/status":
                doc, _age, _at = health.last()
                self._json(doc is not None, doc or {"reason": "no status reported yet"})
            else:
                self._json(False, {"reason": f"no such path {path!r}; try /healthz, /readyz, "
                                             "/metrics or /status"}, code=404)
        except Exception as exc:  # a probe must never take the stage down
            logger.exception("health endpoint %s failed", path)
            self._json(False, {"reason": f"{type(exc).__name__}: {exc}"}, code=500)

    def _json(self, ok: bool, doc: Mapping[str, Any], code: int | None = None) -> None:
        body = json.dumps(doc, default=str).encode()
        self._send(code or (200 if ok else 503), body, "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health %s - %s", self.address_string(), format % args)
