-- Statistical process control (topic millstream.spc): run-rule violations of the control
-- charts and Cp/Cpk per characteristic and shift. Ids derive from what a row describes, so
-- a record sent again after a worker restart collapses (query with FINAL for exact counts).
CREATE TABLE IF NOT EXISTS spc_violations (
    violation_id String,
    tag LowCardinality(String),
    rule LowCardinality(String),
    rule_set LowCardinality(String),
    description String,
    message String,
    chart LowCardinality(String),
    statistic LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    first_ts DateTime64(3, 'UTC'),
    value Float64,
    points UInt32,
    centre Float64,
    ucl Float64,
    lcl Float64,
    sigma Float64,
    detected_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tag, ts, rule, violation_id);

-- per (tag, shift_start) the record with the most points wins (on a tie the newest): a
-- complete shift replaces its partial one, and a tally restarted by a worker restart
-- (fewer points) does not replace a fuller one
CREATE TABLE IF NOT EXISTS spc_capability (
    capability_id String,
    tag LowCardinality(String),
    shift LowCardinality(String),
    shift_start DateTime64(3, 'UTC'),
    shift_end DateTime64(3, 'UTC'),
    complete Bool,
    chart LowCardinality(String),
    points UInt32,
    mean Nullable(Float64),
    sigma_within Nullable(Float64),
    sigma_method String,
    lsl Nullable(Float64),
    usl Nullable(Float64),
    cp Nullable(Float64),
    cpk Nullable(Float64),
    cpu Nullable(Float64),
    cpl Nullable(Float64),
    note String,
    computed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(points)
PARTITION BY toYYYYMM(shift_start)
ORDER BY (tag, shift_start);
