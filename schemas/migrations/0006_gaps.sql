-- 0006: outages, from the gap markers connectors write when they lose a device: a BAD
-- reading with no value whose status starts with "gap:" (e.g. "gap: connection lost").
--
-- ORDER BY (source, ts, tag, epoch, seq): "outages of this source over time" reads one
-- range; the reading's identity completes the key, so a redelivered marker collapses.

CREATE TABLE IF NOT EXISTS gaps (
    source LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    tag LowCardinality(String),
    reason LowCardinality(String),
    epoch UInt64,
    seq UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (source, ts, tag, epoch, seq);

-- markers stored before this migration (ReplacingMergeTree: a second run collapses)
-- if: SELECT (SELECT count() FROM gaps) = 0
INSERT INTO gaps
SELECT source, ts, tag, trim(BOTH ' ' FROM substring(status, 5)) AS reason, epoch, seq
FROM readings WHERE quality = 2 AND startsWith(status, 'gap:');

CREATE MATERIALIZED VIEW IF NOT EXISTS gaps_mv TO gaps AS
SELECT source, ts, tag, trim(BOTH ' ' FROM substring(status, 5)) AS reason, epoch, seq
FROM readings WHERE quality = 2 AND startsWith(status, 'gap:');
