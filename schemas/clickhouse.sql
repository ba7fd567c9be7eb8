-- millstream's ClickHouse tables. Times are DateTime64(3, 'UTC') (Unix ms on the wire).
-- ReplacingMergeTree keyed on each row's identity: a message redelivered after a crash
-- collapses into one row (query with FINAL, or count distinct keys, for exact counts).

CREATE TABLE IF NOT EXISTS readings (
    tag LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    value Nullable(Float64),
    quality UInt8,
    source LowCardinality(String),
    epoch UInt64,
    seq UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    server_ts Nullable(DateTime64(3, 'UTC')),
    status LowCardinality(String) DEFAULT '',
    text Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tag, ts, source, epoch, seq);

-- tables created before these columns existed get them
ALTER TABLE readings ADD COLUMN IF NOT EXISTS server_ts Nullable(DateTime64(3, 'UTC'));
ALTER TABLE readings ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT '';
ALTER TABLE readings ADD COLUMN IF NOT EXISTS text Nullable(String);

CREATE TABLE IF NOT EXISTS aggregates (
    tag LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    count UInt32,
    min Float64,
    max Float64,
    mean Float64,
    std Float64,
    first Float64,
    last Float64,
    window_ms UInt32,
    good_share Nullable(Float64)
) ENGINE = ReplacingMergeTree
ORDER BY (tag, window_start, window_ms);

-- tables created before window sizes existed get the column and a key that keeps sizes
-- apart (their older rows read window_ms 0: the size is window_end - window_start)
ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS window_ms UInt32,
    MODIFY ORDER BY (tag, window_start, window_ms);
ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS good_share Nullable(Float64);

CREATE TABLE IF NOT EXISTS anomalies (
    anomaly_id String,
    tag LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    feature LowCardinality(String),
    value Float64,
    score Float64,
    threshold Float64,
    detector LowCardinality(String),
    detected_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (tag, window_start, feature, anomaly_id);

CREATE TABLE IF NOT EXISTS commands (
    command_id String,
    rule LowCardinality(String),
    machine LowCardinality(String),
    setpoint LowCardinality(String),
    value Float64,
    reason String,
    issued_at DateTime64(3, 'UTC'),
    expires_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (command_id);

CREATE TABLE IF NOT EXISTS command_results (
    command_id String,
    setpoint LowCardinality(String),
    requested Float64,
    readback Nullable(Float64),
    status LowCardinality(String),
    detail String,
    executed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (command_id);

CREATE TABLE IF NOT EXISTS deadletter (
    stage LowCardinality(String),
    reason LowCardinality(String),
    detail String,
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key Nullable(String),
    payload String,
    payload_encoding LowCardinality(String),
    at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, stage);

-- The command audit: every command with what became of it (status is empty while pending).
CREATE VIEW IF NOT EXISTS command_audit AS
SELECT c.command_id, c.rule, c.machine, c.setpoint, c.value, c.reason, c.issued_at,
       r.status, r.readback, r.detail, r.executed_at
FROM commands AS c FINAL
LEFT JOIN command_results AS r FINAL USING (command_id);
