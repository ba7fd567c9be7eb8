-- 0005: 1-minute and 1-hour rollups per tag, maintained by ClickHouse on every insert into
-- readings (materialised views into AggregatingMergeTree tables).
--
-- Statistics cover usable readings (quality GOOD or UNCERTAIN, with a value); samples and
-- good count every reading, so good / samples is the good-quality share. Read them with the
-- -Merge functions (avgMerge(avg), argMinMerge(first), ...) and GROUP BY tag, bucket.
-- ORDER BY (tag, bucket): a trend is one tag over a time range. PARTITION BY month.
-- A view sees every insert, not the merged table: the sink inserts each reading once
-- (readings_progress) and retries with a deduplication token, so the rollups stay exact.

CREATE TABLE IF NOT EXISTS readings_1m (
    tag LowCardinality(String),
    bucket DateTime('UTC'),
    samples SimpleAggregateFunction(sum, UInt64),
    good SimpleAggregateFunction(sum, UInt64),
    count SimpleAggregateFunction(sum, UInt64),
    min SimpleAggregateFunction(min, Nullable(Float64)),
    max SimpleAggregateFunction(max, Nullable(Float64)),
    avg AggregateFunction(avg, Nullable(Float64)),
    first AggregateFunction(argMin, Nullable(Float64), DateTime64(3, 'UTC')),
    last AggregateFunction(argMax, Nullable(Float64), DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tag, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS readings_1h AS readings_1m;

-- readings stored before this migration, once (the views do not exist yet: no overlap)
-- if: SELECT (SELECT count() FROM readings_1m) = 0
INSERT INTO readings_1m
SELECT tag, toStartOfMinute(ts) AS bucket, count() AS samples, countIf(quality = 0) AS good,
       countIf(quality < 2 AND value IS NOT NULL) AS count,
       minIf(value, quality < 2) AS min, maxIf(value, quality < 2) AS max,
       avgState(if(quality < 2, value, NULL)) AS avg,
       argMinState(if(quality < 2, value, NULL), ts) AS first,
       argMaxState(if(quality < 2, value, NULL), ts) AS last
FROM readings FINAL GROUP BY tag, bucket;

-- if: SELECT (SELECT count() FROM readings_1h) = 0
INSERT INTO readings_1h
SELECT tag, toStartOfHour(ts) AS bucket, count() AS samples, countIf(quality = 0) AS good,
       countIf(quality < 2 AND value IS NOT NULL) AS count,
       minIf(value, quality < 2) AS min, maxIf(value, quality < 2) AS max,
       avgState(if(quality < 2, value, NULL)) AS avg,
       argMinState(if(quality < 2, value, NULL), ts) AS first,
       argMaxState(if(quality < 2, value, NULL), ts) AS last
FROM readings FINAL GROUP BY tag, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m_mv TO readings_1m AS
SELECT tag, toStartOfMinute(ts) AS bucket, count() AS samples, countIf(quality = 0) AS good,
       countIf(quality < 2 AND value IS NOT NULL) AS count,
       minIf(value, quality < 2) AS min, maxIf(value, quality < 2) AS max,
       avgState(if(quality < 2, value, NULL)) AS avg,
       argMinState(if(quality < 2, value, NULL), ts) AS first,
       argMaxState(if(quality < 2, value, NULL), ts) AS last
FROM readings GROUP BY tag, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h_mv TO readings_1h AS
SELECT tag, toStartOfHour(ts) AS bucket, count() AS samples, countIf(quality = 0) AS good,
       countIf(quality < 2 AND value IS NOT NULL) AS count,
       minIf(value, quality < 2) AS min, maxIf(value, quality < 2) AS max,
       avgState(if(quality < 2, value, NULL)) AS avg,
       argMinState(if(quality < 2, value, NULL), ts) AS first,
       argMaxState(if(quality < 2, value, NULL), ts) AS last
FROM readings GROUP BY tag, bucket;
