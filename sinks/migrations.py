"""Apply the schema migrations and the configured TTLs to a ClickHouse database.

``migrate(client)`` records each applied version in ``schema_migrations`` (version, name,
checksum, applied_at) and applies the ones missing, in order; running it again does
nothing. ``apply_ttl(client, days)`` sets each table's TTL when it differs from the
configured one. Both run when the sink starts, and from ``millstream sink migrate``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.clickhouse import Migration, load_migrations
from sinks.exceptions import SinkError

__all__ = [
    "TTL_COLUMNS",
    "MigrationError",
    "applied_versions",
    "apply_ttl",
    "migrate",
    "ttl_clause",
]

logger = logging.getLogger(__name__)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY version"""

# the time column each TTL is measured from (a DateTime or DateTime64 column of the table)
TTL_COLUMNS: dict[str, str] = {
    "readings": "ts", "aggregates": "window_start", "anomalies": "window_start",
    "readings_1m": "bucket", "readings_1h": "bucket", "deadletter": "at", "gaps": "ts",
}


class MigrationError(SinkError):
    """A migration failed or an applied one changed; the message names it and what to do."""


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    name: str
    checksum: str


def applied_versions(client: Client) -> dict[int, Applied]:
    client.command(_LEDGER)
    rows = client.query("SELECT version, name, checksum FROM schema_migrations FINAL").result_rows
    return {int(v): Applied(int(v), str(n), str(c)) for v, n, c in rows}


def migrate(client: Client, migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """Apply the migrations not applied yet, in order; the ones applied now."""
    migrations = load_migrations() if migrations is None else list(migrations)
    done = applied_versions(client)
    for m in migrations:
        seen = done.get(m.version)
        if seen is not None and seen.checksum != m.checksum:
            raise MigrationError(
                f"migration {m.version:04d}_{m.name} was applied with checksum "
                f"{seen.checksum[:12]} but the file now has {m.checksum[:12]}; applied "
                "migrations must not change: add a new migration instead")
    todo = [m for m in migrations if m.version not in done]
    for m in todo:
        _apply(client, m)
    if todo:
        logger.info("schema migrated to version %04d (%s)", todo[-1].version,
                    ", ".join(f"{m.version:04d}_{m.name}" for m in todo))
    return todo


def _apply(client: Client, m: Migration) -> None:
    for i, stmt in enumerate(m.statements(), 1):
        try:
            if stmt.guard is not None and not _truthy(client, stmt.guard):
                continue
            client.command(stmt.sql)
        except Exception as exc:
            head = " ".join(stmt.sql.split())[:120]
            raise MigrationError(
                f"migration {m.version:04d}_{m.name}, statement {i} ({head!r}) failed: "
                f"{str(exc).strip()[:500]}; fix the cause and run `millstream sink migrate` "
                "again (its statements are safe to rerun)") from exc
    client.insert("schema_migrations", [[m.version, m.name, m.checksum]],
                  column_names=["version", "name", "checksum"])


def _truthy(client: Client, sql: str) -> bool:
    rows = client.query(sql).result_rows
    return bool(rows and rows[0] and rows[0][0])


def ttl_clause(column: str, days: int) -> str | None:
    """The TTL expression for ``days`` (None: keep forever)."""
    return None if days <= 0 else f"toDateTime({column}) + toIntervalDay({days})"


def _current_ttl(client: Client, table: str) -> str | None:
    rows = client.query("SELECT create_table_query FROM system.tables "
                        "WHERE database = currentDatabase() AND name = {t:String}",
                        parameters={"t": table}).result_rows
    if not rows:
        return None
    m = re.search(r"\bTTL\s+(.*?)(?:\s+SETTINGS\s|$)", str(rows[0][0]), re.S)
    return m.group(1).strip() if m else None


def _same(current: str | None, wanted: str | None) -> bool:
    def norm(s: str | None) -> str:
        return re.sub(r"[\s`]", "", s or "").lower()
    return norm(current) == norm(wanted)


def apply_ttl(client: Client, days: Mapping[str, int]) -> dict[str, str | None]:
    """Set each table's TTL to ``days`` (0: none) where it differs; the changes made.

    Existing parts are not rewritten (``materialize_ttl_after_modify=0``): merges and the
    daily partitions drop expired data in the background instead of one long mutation.
    """
    changed: dict[str, str | None] = {}
    for table, n in days.items():
        column = TTL_COLUMNS.get(table)
        if column is None:
            raise MigrationError(f"no TTL can be set on table {table!r}; tables with a TTL: "
                                 f"{', '.join(sorted(TTL_COLUMNS))}")
        wanted = ttl_clause(column, n)
        current = _current_ttl(client, table)
        if _same(current, wanted):
            continue
        if wanted is None:
            client.command(f"ALTER TABLE {table} REMOVE TTL")
        else:
            client.command(f"ALTER TABLE {table} MODIFY TTL {wanted}",
                           settings={"materialize_ttl_after_modify": 0})
        logger.info("TTL of %s: %s", table, wanted or "none (kept forever)")
        changed[table] = wanted
    return changed
