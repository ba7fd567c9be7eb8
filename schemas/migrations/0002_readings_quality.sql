-- 0002: readings carry their unit (filled by the sink from the catalog) and refuse rows no
-- analyst can use; inserts can be deduplicated by token; the sink's progress per source.
--
-- Ordering and partitions (kept from 0001): ORDER BY (tag, ts, source, epoch, seq) puts one
-- tag's readings together in time order, so "tag X between T1 and T2" and "last value of X"
-- read a narrow range of granules; source/epoch/seq complete the row's identity, so a
-- redelivered reading collapses (ReplacingMergeTree). PARTITION BY day: the TTL drops whole
-- days of parts without rewriting them, and a query over a time range prunes the others.

ALTER TABLE readings ADD COLUMN IF NOT EXISTS unit LowCardinality(String) DEFAULT '';

-- A source timestamp outside 2000..2100 is a device whose clock is not set (1970) or wrong:
-- such a row is refused by ClickHouse, and the sink dead-letters it with this message.
ALTER TABLE readings ADD CONSTRAINT IF NOT EXISTS ts_plausible
    CHECK ts >= toDateTime64('2000-01-01 00:00:00', 3, 'UTC')
      AND ts < toDateTime64('2100-01-01 00:00:00', 3, 'UTC');

-- A text value longer than 64 KiB is not a tag value (a misconfigured register map).
ALTER TABLE readings ADD CONSTRAINT IF NOT EXISTS text_size
    CHECK length(ifNull(text, '')) <= 65536;

-- insert_deduplication_token works on non-replicated tables only with a window: the sink
-- retries a failed insert with the same token, so a block that did land is not stored twice.
ALTER TABLE readings MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE anomalies MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE commands MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE command_results MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE deadletter MODIFY SETTING non_replicated_deduplication_window = 1000;

-- What the sink stored per (source, epoch): the lowest and highest seq and how many rows
-- (the sink also counts rows it dead-lettered or left out for an unknown tag). When
-- n = hi - lo + 1 every seq in lo..hi is done, and the sink skips a redelivered reading
-- in that range before the insert, so the rollups below see each reading once.
CREATE TABLE IF NOT EXISTS readings_progress (
    source LowCardinality(String),
    epoch UInt64,
    lo SimpleAggregateFunction(min, UInt64),
    hi SimpleAggregateFunction(max, UInt64),
    n SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (source, epoch)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_progress_mv TO readings_progress AS
SELECT source, epoch, min(seq) AS lo, max(seq) AS hi, count() AS n
FROM readings GROUP BY source, epoch;

-- readings stored before this migration, once (uniqExact: duplicates awaiting a merge
-- count once)
-- if: SELECT (SELECT count() FROM readings_progress) = 0
INSERT INTO readings_progress
SELECT source, epoch, min(seq), max(seq), uniqExact(seq) FROM readings GROUP BY source, epoch;
