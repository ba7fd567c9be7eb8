-- 0010: the digital twin's latest state per machine, and OEE and energy per machine and
-- shift (topics millstream.twin and millstream.kpis).
--
-- twin: one row per twin record; ReplacingMergeTree(updated) keyed on the machine keeps
-- the newest (query with FINAL). The whole record is in doc (JSON, schema
-- millstream.twin.v1); the columns beside it are what analysts filter on, and tag_values
-- the last value of every tag by name (tag_values['spindle_temp']).
-- kpis: one row per KPI record; ReplacingMergeTree(updated) keyed on (machine,
-- shift_start) keeps the newest, which is the final one once the shift has ended.
-- PARTITION BY the shift's month: every version of a shift's row meets in one partition.

CREATE TABLE IF NOT EXISTS twin (
    machine LowCardinality(String),
    site LowCardinality(String),
    area LowCardinality(String),
    line LowCardinality(String),
    name LowCardinality(String),
    state LowCardinality(String),
    state_since DateTime64(3, 'UTC'),
    updated DateTime64(3, 'UTC'),
    tag_values Map(String, Nullable(Float64)),
    alarms_active UInt16,
    worst_severity LowCardinality(String),
    last_command_status LowCardinality(String),
    oee Nullable(Float64),
    kwh Nullable(Float64),
    doc String
) ENGINE = ReplacingMergeTree(updated)
ORDER BY machine
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS kpis (
    machine LowCardinality(String),
    shift LowCardinality(String),
    shift_start DateTime64(3, 'UTC'),
    shift_end DateTime64(3, 'UTC'),
    final Bool,
    through DateTime64(3, 'UTC'),
    updated DateTime64(3, 'UTC'),
    planned_s Float64,
    run_s Float64,
    fault_s Float64,
    idle_s Float64,
    maintenance_s Float64,
    stopped_s Float64,
    unknown_s Float64,
    availability Nullable(Float64),
    performance Nullable(Float64),
    quality Nullable(Float64),
    oee Nullable(Float64),
    parts Float64,
    good Float64,
    rejects Float64,
    ideal_cycle_s Nullable(Float64),
    kwh Nullable(Float64),
    kwh_per_part Nullable(Float64),
    power_kw Nullable(Float64),
    energy_gap_s Float64
) ENGINE = ReplacingMergeTree(updated)
PARTITION BY toYYYYMM(shift_start)
ORDER BY (machine, shift_start)
SETTINGS non_replicated_deduplication_window = 1000;
