"""Starting the dashboard from the settings: what ``millstream dashboard`` runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from millstream.dashboard.server import serve
from millstream.dashboard.service import Dashboard, DashboardConfig
from millstream.settings import Settings
from schemas.catalog import Catalog
from schemas.topics import Topics

__all__ = ["run_dashboard"]

logger = logging.getLogger(__name__)


def run_dashboard(settings: Settings, catalog: Catalog, bootstrap: str, *,
                  host: str | None = None, port: int | None = None,
                  status_file: Path | None = None) -> dict[str, Any]:
    """Serve the dashboard until SIGINT or SIGTERM; returns its last status."""
    config = DashboardConfig(
        bootstrap=bootstrap, kafka_config=settings.kafka_client_config(),
        topics=Topics(settings.topic_prefix), dsn=settings.dsn,
        alarm_lookback_s=settings.dashboard_alarm_lookback_s,
        alarm_actions=settings.dashboard_alarm_actions, status_file=status_file,
        health=settings.health())
    dash = Dashboard(catalog, config)
    bind = settings.dashboard_host if host is None else host
    at = settings.dashboard_port if port is None else port

    def _ready(url: str) -> None:
        print(f"millstream: dashboard on {url}", file=sys.stderr, flush=True)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(dash, bind, at, stop, _ready,
                    trust_forwarded=settings.dashboard_trust_forwarded)

    asyncio.run(_main())
    return dash.status(running=False)
