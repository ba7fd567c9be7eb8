"""``millstream sink migrate``: bring the ClickHouse schema up to date, then exit.

The sink does the same on start; this runs it on its own (before a deployment, or to see
what would change), printing the versions applied and the TTLs set as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from millstream.settings import Settings

__all__ = ["add_arguments", "cmd_sink_migrate"]

logger = logging.getLogger(__name__)


def add_arguments(sink_parser: argparse.ArgumentParser) -> None:
    """Add ``migrate`` under the ``sink`` command (``millstream sink`` alone runs the sink)."""
    actions = sink_parser.add_subparsers(dest="sink_action", metavar="ACTION")
    p = actions.add_parser("migrate", help="apply the schema migrations and TTLs, then exit",
                           description=__doc__)
    p.add_argument("--no-ttl", action="store_true",
                   help="leave the tables' TTLs as they are")
    p.set_defaults(func=cmd_sink_migrate)


def cmd_sink_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.clickhouse import load_migrations
    from sinks.chclient import ClientOptions, open_client, redact_dsn
    from sinks.migrations import applied_versions, apply_ttl, migrate

    client = open_client(settings.dsn, ClientOptions.from_settings(settings))
    try:
        applied = migrate(client)
        ttl = {} if args.no_ttl else apply_ttl(client, settings.ttl_days())
        versions = sorted(applied_versions(client))
    finally:
        client.close()
    latest = load_migrations()[-1].version
    print(f"millstream: schema of {redact_dsn(settings.dsn)} at version {versions[-1]:04d} "
          f"(latest {latest:04d}); applied now: "
          f"{', '.join(f'{m.version:04d}_{m.name}' for m in applied) or 'nothing'}",
          file=sys.stderr)
    print(json.dumps({"applied": [m.version for m in applied], "version": versions[-1],
                      "ttl_changed": ttl}), flush=True)
    return 0
