"""Schema migrations, TTLs and rollups on a real chDB, opened in-process (no Kafka)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from schemas.clickhouse import Migration, load_migrations, parse_statements
from sinks.chclient import open_client
from sinks.migrations import MigrationError, applied_versions, apply_ttl, migrate

pytestmark = pytest.mark.integration

V0 = Path(__file__).resolve().parents[1] / "data" / "clickhouse_v0.sql"
T0 = 1_793_000_000_000  # 2026-10-26, inside every default TTL


@pytest.fixture
def client(chdb_dsn: str) -> Iterator[Client]:
    c = open_client(chdb_dsn)
    try:
        yield c
    finally:
        c.close()


def q(client: Client, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def insert_readings(client: Client, rows: list[tuple[object, ...]],
                    columns: tuple[str, ...] = ("tag", "ts", "value", "quality", "source",
                                                "epoch", "seq", "status")) -> None:
    client.insert("readings", [list(r) for r in rows], column_names=list(columns))


def test_fresh_database_gets_every_migration_once(client: Client) -> None:
    applied = migrate(client)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert migrate(client) == []  # idempotent: nothing left to do
    tables = {r[0] for r in q(client, "SHOW TABLES")}
    assert {"readings", "aggregates", "alarms", "gaps", "readings_1m", "readings_1h",
            "command_audit", "schema_migrations"} <= tables
    ledger = q(client, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [(v, n, c) for v, n, c in ledger] == [(m.version, m.name, m.checksum)
                                               for m in load_migrations()]
    cols = {str(n): str(t) for n, t in
            q(client, "SELECT name, type FROM system.columns WHERE table = 'readings'")}
    assert cols["unit"] == "LowCardinality(String)"


def test_directory_made_by_the_old_ddl_upgrades_and_keeps_its_data(client: Client) -> None:
    for stmt in parse_statements(V0.read_text()):
        client.command(stmt.sql)
    insert_readings(client, [("a/t", T0, 1.0, 0, "s", 1, 1, ""),
                             ("a/t", T0 + 1000, None, 2, "s", 1, 2, "gap: connection lost"),
                             ("a/t", T0 + 61_000, 3.0, 1, "s", 1, 3, "")])
    client.command(f"INSERT INTO aggregates SELECT 'a/t', fromUnixTimestamp64Milli({T0}), "
                   f"fromUnixTimestamp64Milli({T0 + 10_000}), 2, 1, 3, 2, 1, 1, 3")
    assert next(m.version for m in migrate(client)) == 1
    assert q(client, "SELECT count() FROM readings") == [(3,)]
    assert q(client, "SELECT tag, window_ms, count FROM aggregates") == [("a/t", 10_000, 2)]
    assert q(client, "SELECT source, epoch, min(lo), max(hi), sum(n) FROM readings_progress "
                     "GROUP BY ALL") == [("s", 1, 1, 3, 3)]
    assert q(client, "SELECT sum(samples), sum(count) FROM readings_1m") == [(3, 2)]
    assert q(client, "SELECT source, reason FROM gaps") == [("s", "connection lost")]
    assert not any(t == "aggregates_0003" for (t,) in q(client, "SHOW TABLES"))
    # a window of another size now coexists with the first one
    client.command(f"INSERT INTO aggregates (tag, window_start, window_end, count, min, max, "
                   f"mean, std, first, last) SELECT 'a/t', fromUnixTimestamp64Milli({T0}), "
                   f"fromUnixTimestamp64Milli({T0 + 60_000}), 5, 1, 3, 2, 1, 1, 3")
    assert q(client, "SELECT window_ms FROM aggregates FINAL ORDER BY window_ms") == [
        (10_000,), (60_000,)]


def test_a_migration_that_changed_after_it_was_applied_is_refused(client: Client) -> None:
    migrate(client)
    first = load_migrations()[0]
    edited = [Migration(first.version, first.name, first.text + "\n-- edited\n")]
    with pytest.raises(MigrationError, match="0001_initial was applied with checksum"):
        migrate(client, edited)


def test_a_failing_migration_names_itself_and_is_not_recorded(client: Client) -> None:
    bad = Migration(9999, "broken", "CREATE TABLE IF NOT EXISTS ok_one (x UInt8) "
                    "ENGINE = MergeTree ORDER BY x;\nSELECT nope FROM nowhere;\n")
    with pytest.raises(MigrationError, match=r"9999_broken, statement 2"):
        migrate(client, [bad])
    assert 9999 not in applied_versions(client)


def test_ttl_from_configuration_is_set_changed_and_removed(client: Client) -> None:
    migrate(client)

    def ttl(table: str) -> str:
        return str(q(client, f"SELECT create_table_query FROM system.tables "
                             f"WHERE name = '{table}'")[0][0])

    changed = apply_ttl(client, {"readings": 90, "readings_1h": 730, "aggregates": 0})
    assert set(changed) == {"readings", "readings_1h"}
    assert "TTL toDateTime(ts) + toIntervalDay(90)" in ttl("readings")
    assert apply_ttl(client, {"readings": 90, "readings_1h": 730}) == {}  # unchanged: no-op
    assert apply_ttl(client, {"readings": 0}) == {"readings": None}
    assert "TTL" not in ttl("readings")
    with pytest.raises(MigrationError, match="no TTL can be set on table 'nope'"):
        apply_ttl(client, {"nope": 1})


def test_rollups_equal_a_recomputation_from_the_raw_readings(client: Client) -> None:
    migrate(client)
    rng = random.Random(5)
    rows: list[tuple[object, ...]] = []
    for seq in range(1, 20_001):  # ~3 hours of 4 tags, quality mixed, some without value
        tag = f"p/tag{seq % 4}"
        quality = rng.choice([0, 0, 0, 0, 1, 2])
        value = None if quality == 2 and rng.random() < 0.5 else round(rng.gauss(50, 10), 3)
        rows.append((tag, T0 + seq * 530 + rng.randint(0, 400), value, quality, "s", 1, seq, ""))
    for i in range(0, len(rows), 3000):  # several inserts: the views add up their states
        insert_readings(client, rows[i:i + 3000])
    for table, bucket in (("readings_1m", "toStartOfMinute"), ("readings_1h", "toStartOfHour")):
        rollup = q(client, f"""
            SELECT tag, bucket, sum(samples), sum(good), sum(count), min(min), max(max),
                   round(avgMerge(avg), 9), argMinMerge(first), argMaxMerge(last)
            FROM {table} GROUP BY tag, bucket ORDER BY tag, bucket""")
        raw = q(client, f"""
            SELECT tag, {bucket}(ts) AS bucket, count(), countIf(quality = 0),
                   countIf(quality < 2 AND value IS NOT NULL),
                   minIf(value, quality < 2), maxIf(value, quality < 2),
                   round(avgIf(value, quality < 2), 9),
                   argMinIf(value, ts, quality < 2 AND value IS NOT NULL),
                   argMaxIf(value, ts, quality < 2 AND value IS NOT NULL)
            FROM readings GROUP BY tag, bucket ORDER BY tag, bucket""")
        assert rollup == raw, table
        assert sum(r[2] for r in rollup) == len(rows)  # type: ignore[misc]
    assert len(q(client, "SELECT DISTINCT bucket FROM readings_1h")) >= 3
