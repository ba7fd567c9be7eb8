"""The ClickHouse DDL as statements, for sinks and tests to apply."""

from __future__ import annotations

from importlib import resources

__all__ = ["TABLES", "ddl_statements"]

TABLES: tuple[str, ...] = (
    "readings",
    "aggregates",
    "anomalies",
    "commands",
    "command_results",
    "deadletter",
)


def ddl_statements() -> list[str]:
    """The statements of ``clickhouse.sql``, comments stripped, in order."""
    text = resources.files("schemas").joinpath("clickhouse.sql").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
