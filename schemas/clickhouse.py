"""The ClickHouse schema as versioned migrations: ``schemas/migrations/NNNN_name.sql``.

Each file is one migration, applied once, in version order, and recorded with its checksum
(:mod:`sinks.migrations` applies them). Statements end with ``;`` at the end of a line.
A comment line ``-- if: SELECT ...`` guards the next statement: it runs only when that
query's first value is non-zero, so a migration that stopped half-way can run again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from schemas.exceptions import MillstreamError

__all__ = ["TABLES", "Migration", "Statement", "ddl_statements", "load_migrations",
           "parse_statements"]

TABLES: tuple[str, ...] = (
    "readings",
    "aggregates",
    "anomalies",
    "commands",
    "command_results",
    "deadletter",
    "alarms",
    "alarm_log",
    "gaps",
    "readings_1m",
    "readings_1h",
    "readings_progress",
    "command_audit_log",
    "twin",
    "kpis",
)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement, and the query that must return non-zero for it to run."""

    sql: str
    guard: str | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file: an applied migration whose file changed is refused."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> list[Statement]:
        return parse_statements(self.text)


def parse_statements(text: str) -> list[Statement]:
    """The statements of a migration file, comments stripped, with their guards."""
    out: list[Statement] = []
    buf: list[str] = []
    guard: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-- if:"):
            guard = stripped[len("-- if:"):].strip()
            continue
        if stripped.startswith("--") or (not stripped and not buf):
            continue
        buf.append(line)
        if stripped.endswith(";"):
            sql = "\n".join(buf).strip().rstrip(";").strip()
            out.append(Statement(sql, guard))
            buf, guard = [], None
    if "".join(buf).strip():
        raise MillstreamError(f"a migration ends without ';' after: {' '.join(buf)[:80]!r}")
    return out


def load_migrations() -> list[Migration]:
    """Every migration shipped with millstream, in version order."""
    folder = resources.files("schemas").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m is None:
            continue
        version = int(m.group(1))
        if version in found:
            raise MillstreamError(f"two migrations have version {version:04d}: "
                                  f"{found[version].name} and {m.group(2)}")
        found[version] = Migration(version, m.group(2), entry.read_text())
    return [found[v] for v in sorted(found)]


def ddl_statements() -> list[str]:
    """Every migration's statements in order, guards dropped (for a fresh database only)."""
    return [s.sql for m in load_migrations() for s in m.statements()]
