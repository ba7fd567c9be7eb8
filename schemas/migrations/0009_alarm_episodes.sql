-- 0009: anomalies say what drove them, and alarm episodes who changed them, with every
-- change kept.
--
-- anomalies: scope ('tag' or 'asset': a machine's window scored as a whole), the machine,
-- the tags that drove it and the drivers ranked (what, contribution).
-- alarms (0004, the current state per episode, newest version wins): the condition
-- (active), acknowledged, what changed (action), who (actor), the operator's note, the
-- peak score, the detectors involved, and until when it is shelved.
-- alarm_log: every state change of every episode (the audit: who did what when), filled by
-- a materialised view on each insert into alarms. ReplacingMergeTree on (alarm_id,
-- version): a record redelivered after a crash collapses into one row (FINAL). PARTITION
-- BY the month the episode started, as alarms, so an episode's rows meet in one partition.

ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS scope LowCardinality(String) DEFAULT 'tag';
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS asset LowCardinality(String) DEFAULT '';
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS tags Array(LowCardinality(String));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS drivers Array(Tuple(name String, score Float64));

ALTER TABLE alarms ADD COLUMN IF NOT EXISTS active Bool DEFAULT false;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS acknowledged Bool DEFAULT false;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS action LowCardinality(String) DEFAULT '';
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS actor LowCardinality(String) DEFAULT '';
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS note String DEFAULT '';
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS score Float64 DEFAULT 0;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS detectors Array(LowCardinality(String));
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS shelved_until Nullable(DateTime64(3, 'UTC'));

CREATE TABLE IF NOT EXISTS alarm_log (
    alarm_id String,
    asset LowCardinality(String),
    tags Array(LowCardinality(String)),
    severity LowCardinality(String),
    state LowCardinality(String),
    message String,
    started_at DateTime64(3, 'UTC'),
    ended_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC'),
    version UInt64,
    active Bool,
    acknowledged Bool,
    action LowCardinality(String),
    actor LowCardinality(String),
    note String,
    score Float64,
    detectors Array(LowCardinality(String)),
    shelved_until Nullable(DateTime64(3, 'UTC'))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (alarm_id, version);

CREATE MATERIALIZED VIEW IF NOT EXISTS alarm_log_mv TO alarm_log AS
SELECT alarm_id, asset, tags, severity, state, message, started_at, ended_at, updated_at,
       version, active, acknowledged, action, actor, note, score, detectors, shelved_until
FROM alarms;
