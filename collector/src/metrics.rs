//! Every metric of the collector, named and documented in one place.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Counter: Kafka messages consumed (including replays skipped, duplicates and dead letters).
pub(crate) const CONSUMED_TOTAL: &str = "collector_consumed_messages_total";
/// Counter: rows written to the store.
pub(crate) const WRITTEN_ROWS_TOTAL: &str = "collector_written_rows_total";
/// Counter: Parquet files written.
pub(crate) const FILES_WRITTEN_TOTAL: &str = "collector_files_written_total";
/// Counter, bytes: Parquet bytes written.
pub(crate) const WRITTEN_BYTES_TOTAL: &str = "collector_written_bytes_total";
/// Counter `{reason}`: malformed messages sent to the dead-letter file.
pub(crate) const DEAD_LETTERED_TOTAL: &str = "collector_dead_lettered_total";
/// Counter: records dropped because their machine's `seq` was already stored (agent resends).
pub(crate) const DUPLICATES_DROPPED_TOTAL: &str = "collector_duplicates_dropped_total";
/// Counter: messages skipped because the store already holds their offset (collector replays).
pub(crate) const REPLAYED_SKIPPED_TOTAL: &str = "collector_replayed_messages_skipped_total";
/// Counter `{kind}`: errors Kafka reported to the consumer: `authentication`, `tls`,
/// `authorization` (an ACL), `other`.
pub(crate) const KAFKA_ERRORS_TOTAL: &str = "collector_kafka_errors_total";
/// Gauge `{partition}`: messages in the partition not yet consumed by this group.
pub(crate) const CONSUMER_LAG: &str = "collector_consumer_lag";
/// Histogram, seconds: time to write and commit one flush.
pub(crate) const FLUSH_DURATION_SECONDS: &str = "collector_flush_duration_seconds";
/// Counter: flush writes or commits that failed (retried).
pub(crate) const FLUSH_ERRORS_TOTAL: &str = "collector_flush_errors_total";
/// Counter: Delta commits made.
pub(crate) const COMMITS_TOTAL: &str = "collector_delta_commits_total";
/// Counter: commits that lost a race to another writer and were retried on the newer version.
pub(crate) const COMMIT_RETRIES_TOTAL: &str = "collector_delta_commit_retries_total";
/// Counter: Delta checkpoints this collector wrote.
pub(crate) const CHECKPOINTS_TOTAL: &str = "collector_delta_checkpoints_total";
/// Counter: flushes dropped because another collector stored one of their partitions.
pub(crate) const FENCED_TOTAL: &str = "collector_fenced_flushes_total";

/// Counter `{cluster, level}`: log patterns new to their cluster (first mined, or unseen for
/// `warm_table::rollup::patterns::NOVELTY_DAYS`), found by `--compact-every`.
pub(crate) const LOG_PATTERNS_NEW_TOTAL: &str = "collector_log_patterns_new_total";
/// Counter `{cluster, level}`: lines given a pattern id by `--compact-every` (warnings, errors,
/// INFO lines that are not request events).
pub(crate) const LOG_PATTERN_LINES_TOTAL: &str = "collector_log_pattern_lines_total";
/// Counter `{outcome}`: `--compact-every` runs, `ok` or `error`.
pub(crate) const COMPACTIONS_TOTAL: &str = "collector_compactions_total";
/// Gauge `{cluster, level, pattern_id, template, example}`, unix seconds it was found: the
/// newest patterns new to their cluster, for the new-pattern alert's annotations (rendered by
/// `compaction.rs`, at most `compaction::NEWEST_KEPT` series).
pub(crate) const NEW_LOG_PATTERN_INFO: &str = "collector_new_log_pattern_info";

pub(crate) const FLUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters exist from the start, at 0, so dashboards and alerts see "none yet", not "no data".
pub(crate) fn register_at_zero() {
    for counter in [
        CONSUMED_TOTAL,
        WRITTEN_ROWS_TOTAL,
        FILES_WRITTEN_TOTAL,
        WRITTEN_BYTES_TOTAL,
        DUPLICATES_DROPPED_TOTAL,
        REPLAYED_SKIPPED_TOTAL,
        FLUSH_ERRORS_TOTAL,
        COMMITS_TOTAL,
        COMMIT_RETRIES_TOTAL,
        CHECKPOINTS_TOTAL,
        FENCED_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
    for outcome in ["ok", "error"] {
        metrics::counter!(COMPACTIONS_TOTAL, "outcome" => outcome).increment(0);
    }
    for reason in crate::batch::DEAD_LETTER_REASONS {
        metrics::counter!(DEAD_LETTERED_TOTAL, "reason" => *reason).increment(0);
    }
}

pub(crate) fn describe() {
    describe_counter!(CONSUMED_TOTAL, Unit::Count, "Kafka messages consumed.");
    describe_counter!(
        WRITTEN_ROWS_TOTAL,
        Unit::Count,
        "Rows written to the warm store."
    );
    describe_counter!(
        FILES_WRITTEN_TOTAL,
        Unit::Count,
        "Parquet files written to the warm store."
    );
    describe_counter!(
        WRITTEN_BYTES_TOTAL,
        Unit::Bytes,
        "Parquet bytes written to the warm store."
    );
    describe_counter!(
        DEAD_LETTERED_TOTAL,
        Unit::Count,
        "Malformed messages written to the dead-letter files (_dead_letters/), by reason."
    );
    describe_counter!(
        DUPLICATES_DROPPED_TOTAL,
        Unit::Count,
        "Records dropped because their machine's seq was already stored."
    );
    describe_counter!(
        REPLAYED_SKIPPED_TOTAL,
        Unit::Count,
        "Messages skipped because the store already holds their offset."
    );
    describe_counter!(
        KAFKA_ERRORS_TOTAL,
        Unit::Count,
        "Errors Kafka reported to the consumer, by kind: authentication, tls, authorization, other."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Messages of a partition not yet consumed by this group."
    );
    describe_histogram!(
        FLUSH_DURATION_SECONDS,
        Unit::Seconds,
        "Time to write and commit one flush (every partition's batch) to the Delta table."
    );
    describe_counter!(
        FLUSH_ERRORS_TOTAL,
        Unit::Count,
        "Flush writes or commits that failed and are retried."
    );
    describe_counter!(COMMITS_TOTAL, Unit::Count, "Delta commits made.");
    describe_counter!(
        LOG_PATTERNS_NEW_TOTAL,
        Unit::Count,
        "Log patterns new to their cluster (first mined, or not seen for 7 days), by the level of their first line."
    );
    describe_counter!(
        LOG_PATTERN_LINES_TOTAL,
        Unit::Count,
        "Lines given a pattern id by compaction (warnings, errors, INFO lines that are not request events)."
    );
    describe_counter!(
        COMPACTIONS_TOTAL,
        Unit::Count,
        "Periodic compactions (--compact-every), by outcome: ok, error."
    );
    describe_counter!(
        COMMIT_RETRIES_TOTAL,
        Unit::Count,
        "Commits that lost a race to another writer and were retried on the newer table version."
    );
    describe_counter!(
        CHECKPOINTS_TOTAL,
        Unit::Count,
        "Delta checkpoints this collector wrote."
    );
    describe_counter!(
        FENCED_TOTAL,
        Unit::Count,
        "Flushes dropped because another collector had stored one of their partitions (a stale owner)."
    );
}
