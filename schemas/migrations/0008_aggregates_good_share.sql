-- 0008: each aggregate carries the share of its readings that were of GOOD quality
-- (GOOD / all readings of the tag in the window; null in rows written before).

ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS good_share Nullable(Float64);
