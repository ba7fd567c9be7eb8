-- 0004: alarm episodes (ISA-18.2): one row per change of an episode, the newest wins.
--
-- ReplacingMergeTree(version) keyed on alarm_id: each state change of an episode
-- (active, acknowledged, cleared, shelved, suppressed) is a new row with a higher version,
-- and merges keep the latest; query with FINAL for the current state. PARTITION BY the
-- month the episode started: every version of an episode shares started_at, so they meet
-- in one partition (ReplacingMergeTree only replaces within a partition).

CREATE TABLE IF NOT EXISTS alarms (
    alarm_id String,
    asset LowCardinality(String),
    tags Array(LowCardinality(String)),
    severity LowCardinality(String),
    state LowCardinality(String),
    message String,
    started_at DateTime64(3, 'UTC'),
    ended_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY alarm_id
SETTINGS non_replicated_deduplication_window = 1000;
