"""The dashboard process minus HTTP: the Kafka feed, the plant state, the pages' streams,
health and the status document.

Lifecycle: construct, :meth:`Dashboard.start` inside the event loop (starts the feed
thread, the ticker and the health endpoints), :meth:`Dashboard.stop`. The feed's batches
are applied on the loop's thread, so :class:`PlantState` needs no lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from millstream.dashboard.actions import AlarmActions
from millstream.dashboard.feed import FeedItem, KafkaFeed, TopicPlan
from millstream.dashboard.hub import Hub
from millstream.dashboard.messages import Kind
from millstream.dashboard.state import PlantState
from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.health import HealthConfig, KafkaProbe, StageHealth
from schemas.status import write_status
from schemas.topics import Topics

__all__ = ["FEED_KEYS", "Dashboard", "DashboardConfig", "plans_for"]

logger = logging.getLogger(__name__)

# what a page hears of the feed (a banner: a topic not there yet, a recent error)
FEED_KEYS = ("topics_missing", "last_error", "last_error_at", "running")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    bootstrap: str
    kafka_config: Mapping[str, str]
    topics: Topics
    dsn: str
    alarm_lookback_s: float = 7 * 24 * 3600.0
    alarm_actions: bool = True
    tick_s: float = 0.5  # how often coalesced twin and window updates go out
    status_file: Path | None = None
    health: HealthConfig | None = None


def plans_for(topics: Topics, alarm_lookback_s: float) -> list[TopicPlan]:
    """Where the feed starts on each topic. The twin and alarm topic names are the twin's
    and the alarms stage's contracts (``<prefix>.twin``, ``<prefix>.alarms``)."""
    p = topics.prefix
    return [
        TopicPlan(f"{p}.twin", Kind.TWIN),
        TopicPlan(f"{p}.alarms", Kind.ALARM, since_ms=now_ms() - int(alarm_lookback_s * 1000)),
        TopicPlan(topics.anomalies, Kind.ANOMALY, tail=300),
        TopicPlan(topics.aggregates, Kind.AGGREGATES, tail=1000),
        TopicPlan(topics.command_audit, Kind.AUDIT, tail=300),
        TopicPlan(topics.command_results, Kind.RESULT, tail=300),
    ]


class Dashboard:
    def __init__(self, catalog: Catalog, config: DashboardConfig) -> None:
        self.catalog, self.config = catalog, config
        sizes = [w.size_ms for w in catalog.streams.window_specs()]
        self.state = PlantState(min(sizes) if sizes else 1000)
        self.hub = Hub()
        self.plans = plans_for(config.topics, config.alarm_lookback_s)
        self.feed: KafkaFeed | None = None
        self.actions = AlarmActions(config.bootstrap, config.kafka_config,
                                    config.topics.prefix, catalog, enabled=config.alarm_actions)
        self.health = StageHealth("dashboard", config.health,
                                  kafka=KafkaProbe(config.bootstrap, config.kafka_config),
                                  ready=self._ready, context={"topic": ""})
        self.known_tags = frozenset(catalog.tags())
        self.url: str | None = None
        self.started_ms = now_ms()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_feed: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.health.start()
        self.feed = KafkaFeed(self.config.bootstrap, self.config.kafka_config, self.plans,
                              self._from_thread)
        self.feed.start()
        self._tasks = [asyncio.create_task(self._tick(), name="dashboard-tick"),
                       asyncio.create_task(self._report(), name="dashboard-report")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in list(self.hub.clients):
            c.close()
        if self.feed is not None:
            await asyncio.to_thread(self.feed.stop)
        self.actions.close()
        write_status(self.config.status_file, self.health.report(self.status(running=False)))
        self.health.stop()

    # -- the feed ------------------------------------------------------------------------
    def _from_thread(self, items: list[FeedItem]) -> None:
        """Hand a batch to the loop and wait until it is applied: the feed reads no faster
        than the loop takes it in (reading a long twin topic cannot pile up memory)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def _apply() -> None:
            self.apply(items)

        try:
            asyncio.run_coroutine_threadsafe(_apply(), loop).result(timeout=30)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError,
                RuntimeError) as exc:  # stopping, or a loop stuck for 30 s: say so, go on
            logger.warning("the dashboard's event loop did not take a batch of %d messages "
                           "(%s)", len(items), type(exc).__name__)

    def apply(self, items: list[FeedItem]) -> None:
        for kind, key, doc in items:
            try:
                events = self.state.apply(kind, key, doc)
            except (KeyError, TypeError, ValueError) as exc:  # a contract gap: say it, go on
                logger.warning("dashboard: a %s message did not fit (%s: %s); skipped",
                               kind.value, type(exc).__name__, exc)
                continue
            for event, data in events:
                self.hub.broadcast(event, data)

    async def _tick(self) -> None:
        """Coalesced updates: twins, machine colours, window results of watched tags."""
        while True:
            await asyncio.sleep(self.config.tick_s)
            twins, removed = self.state.take_twins()
            if twins or removed:
                self.hub.broadcast("twins", {"twins": twins, "removed": removed})
            alerts = self.state.take_alerts()
            if alerts:
                self.hub.broadcast("alerts", alerts)
            for tag, rows in self.state.take_aggregates().items():
                self.hub.to_tag(tag, "aggregates", {"tag": tag, "rows": rows})

    async def _report(self) -> None:
        while True:
            doc = self.status()
            feed = {k: doc.get(k) for k in FEED_KEYS}
            if feed != self._last_feed:
                self._last_feed = feed
                self.hub.broadcast("feed", feed)
            write_status(self.config.status_file, self.health.report(doc))
            await asyncio.sleep(1.0)

    # -- what others ask -----------------------------------------------------------------
    def status(self, running: bool = True) -> dict[str, Any]:
        feed = self.feed.status() if self.feed is not None else {}
        return {"running": running, "url": self.url, "started_at": self.started_ms,
                "updated_at": now_ms(), "clients": len(self.hub.clients),
                "events_sent": self.hub.sent, "clients_dropped": self.hub.dropped,
                "machines": len(self.state.twins), "alarms": len(self.state.alarms),
                **feed, "feed_running": feed.get("running", False)}

    def _ready(self, doc: Mapping[str, Any]) -> str | None:
        if not doc.get("feed_running"):
            return "the dashboard's Kafka feed is not running; see its log"
        return None

    def page_config(self) -> dict[str, Any]:
        return {"alarm_actions": self.actions.available,
                "alarm_actions_why_not": None if self.actions.available
                else self.actions.why_not(),
                "trend_window_ms": self.state.trend_window_ms,
                "topics": {p.kind.value: p.topic for p in self.plans}}

    def plant(self) -> dict[str, Any]:
        """The catalog as the navigation tree needs it: site -> area -> line -> machines,
        each machine with its tags (unit, kind, normal range)."""
        areas: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for m in self.catalog.machines:
            areas.setdefault(m.area, {}).setdefault(m.line, []).append({
                "path": self.catalog.machine_path(m), "name": m.name, "area": m.area,
                "line": m.line, "description": m.description,
                "tags": [{"name": t.name, "path": self.catalog.tag_path(m, t), "unit": t.unit,
                          "kind": t.kind, "low": t.low, "high": t.high} for t in m.tags]})
        return {"enterprise": self.catalog.enterprise, "site": self.catalog.site,
                "areas": [{"name": a, "lines": [{"name": ln, "machines": ms}
                                                for ln, ms in lines.items()]}
                          for a, lines in areas.items()]}
