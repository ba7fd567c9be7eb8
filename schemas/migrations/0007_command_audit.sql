-- 0007: signed commands, and the append-only audit of the executor's decisions.
--
-- A command carries who signed it (issuer), its signature, and whether it is a dry run.
-- command_audit_log has one row per decision of the executor (millstream.command-audit):
-- who, what, why, the rule or the operator, the value before and after, and the verdict
-- of each check (checks: check name -> ok / refused / n/a / skipped). It is a plain
-- MergeTree: rows are never replaced or collapsed. ORDER BY (at, command_id): "what
-- happened last week" reads one range; a command's rows are found by the bloom filter.

ALTER TABLE commands ADD COLUMN IF NOT EXISTS issuer Nullable(String);
ALTER TABLE commands ADD COLUMN IF NOT EXISTS dry_run Nullable(Bool);
ALTER TABLE commands ADD COLUMN IF NOT EXISTS signature Nullable(String);

CREATE TABLE IF NOT EXISTS command_audit_log (
    audit_id String,
    command_id String,
    verdict LowCardinality(String),
    detail String,
    issuer LowCardinality(String),
    rule LowCardinality(String),
    reason String,
    machine LowCardinality(String),
    setpoint LowCardinality(String),
    value Nullable(Float64),
    value_before Nullable(Float64),
    value_after Nullable(Float64),
    checks Map(String, String),
    dry_run Bool,
    at DateTime64(3, 'UTC'),
    INDEX command_idx command_id TYPE bloom_filter GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, command_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- The view keeps its columns; a command refused before it had a result (a forgery, a
-- replay) now shows the audit's verdict and reason instead of an empty status.
DROP VIEW IF EXISTS command_audit;

CREATE VIEW IF NOT EXISTS command_audit AS
SELECT c.command_id AS command_id, c.rule AS rule, c.machine AS machine,
       c.setpoint AS setpoint, c.value AS value, c.reason AS reason,
       c.issued_at AS issued_at, if(r.status != '', r.status, a.verdict) AS status,
       r.readback AS readback, if(r.status != '', r.detail, a.detail) AS detail,
       r.executed_at AS executed_at, c.issuer AS issuer, a.checks AS checks
FROM commands AS c FINAL
LEFT JOIN command_results AS r FINAL USING (command_id)
LEFT JOIN (
    SELECT command_id, argMax(verdict, at) AS verdict, argMax(detail, at) AS detail,
           argMax(checks, at) AS checks
    FROM command_audit_log GROUP BY command_id
) AS a USING (command_id);
