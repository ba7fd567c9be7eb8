"""``millstream dashboard``: the live plant page on http://127.0.0.1:8080 (see the README's
Dashboard section). Read-only but for alarm ack and shelve, when the alarms stage is there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millstream.commands import Add
    from millstream.settings import Settings

__all__ = ["cmd_dashboard", "register"]


def register(add: Add) -> None:
    p = add("dashboard", cmd_dashboard,
            "serve the live plant dashboard (twin, alarms, trends, commands, history)")
    p.add_argument("--host", default=None,
                   help="bind address (default: MILLSTREAM_DASHBOARD_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: MILLSTREAM_DASHBOARD_PORT, 8080; 0: any free port)")
    p.add_argument("--status-file", type=Path, default=None,
                   help="write counters here every second (JSON)")


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.dashboard import run_dashboard
    from millstream.stack.locate import resolve_bootstrap
    from schemas.catalog import load_catalog

    final = run_dashboard(settings, load_catalog(settings.catalog),
                          resolve_bootstrap(settings), host=args.host, port=args.port,
                          status_file=args.status_file)
    print(json.dumps(final, default=str), flush=True)
    return 0
