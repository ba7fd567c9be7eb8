-- 0003: aggregates keep their window size, so several window sizes can coexist.
--
-- ORDER BY (tag, window_ms, window_start): a trend reads one tag at one window size in
-- time order; the key is also the row's identity (redelivery collapses). PARTITION BY
-- month: the TTL drops whole months. A sorting key cannot gain a computed column in place,
-- so the table is rebuilt: new table, copy, swap, drop. The "-- if:" lines make each step
-- run only when it has not happened yet, so a crash half-way leaves a rerunnable state.

CREATE TABLE IF NOT EXISTS aggregates_0003 (
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
    window_ms UInt32 DEFAULT toUInt32(
        toUnixTimestamp64Milli(window_end) - toUnixTimestamp64Milli(window_start))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (tag, window_ms, window_start)
SETTINGS non_replicated_deduplication_window = 1000;

-- if: SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'aggregates' AND name = 'window_ms' = 0
INSERT INTO aggregates_0003 (tag, window_start, window_end, count, min, max, mean, std, first, last)
SELECT tag, window_start, window_end, count, min, max, mean, std, first, last FROM aggregates;

-- if: SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'aggregates' AND name = 'window_ms' = 0
EXCHANGE TABLES aggregates AND aggregates_0003;

DROP TABLE IF EXISTS aggregates_0003;
