//! Every metric of the hot path, named and documented in one place (the metric table of
//! `docs/dashboards-and-alerts.md` mirrors this file), the request histograms' buckets, and the
//! Prometheus recorder.
//!
//! Names follow Prometheus conventions: `_total` counters, `_seconds` and `_bytes` units, one
//! `agent_build_info` gauge carrying identity. Label values are always bounded: the matched
//! endpoint, a supported api-version or `unsupported`, a format, a status code, a log level.

use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Counter `{endpoint, api_version, format, status}`: metadata API responses.
pub(crate) const REQUESTS_TOTAL: &str = "imds_requests_total";
/// Histogram `{endpoint}`, seconds: from a request's arrival to its response being ready.
pub(crate) const REQUEST_DURATION_SECONDS: &str = "imds_request_duration_seconds";
/// Histogram `{endpoint}`, bytes: response body sizes.
pub(crate) const RESPONSE_SIZE_BYTES: &str = "imds_response_size_bytes";
/// Gauge: requests being served right now.
pub(crate) const REQUESTS_IN_FLIGHT: &str = "imds_requests_in_flight";
/// Gauge: connections open to the metadata API.
pub(crate) const OPEN_CONNECTIONS: &str = "imds_open_connections";
/// Counter `{reason}`: metadata API connections the agent closed: `idle_timeout`,
/// `header_timeout`, `evicted` (the longest-idle one, for a new caller at the cap) or `refused`
/// (at the cap with every connection busy).
pub(crate) const CONNECTIONS_CLOSED_TOTAL: &str = "imds_connections_closed_total";
/// Gauge: `wait-for-change` requests held right now.
pub(crate) const HELD_REQUESTS: &str = "imds_held_requests";
/// Counter: requests refused with 429 by the per-caller rate limit.
pub(crate) const THROTTLED_REQUESTS_TOTAL: &str = "imds_throttled_requests_total";
/// Gauge, seconds: time since the served metadata was last confirmed current by its source.
pub(crate) const METADATA_AGE_SECONDS: &str = "imds_metadata_age_seconds";
/// Counter `{source}`: metadata loads that succeeded (file, upstream).
pub(crate) const METADATA_RELOADS_TOTAL: &str = "imds_metadata_reloads_total";
/// Counter `{source}`: metadata loads refused (invalid document, unreachable upstream).
pub(crate) const METADATA_RELOAD_ERRORS_TOTAL: &str = "imds_metadata_reload_errors_total";
/// Counter `{level}`: log events accepted by the local log (written, or dropped and counted below).
pub(crate) const LOG_EVENTS_TOTAL: &str = "agent_log_events_total";
/// Counter: log events dropped because the log writer fell behind.
pub(crate) const LOG_DROPPED_EVENTS_TOTAL: &str = "agent_log_dropped_events_total";
/// Counter: events the warm shipper delivered to Kafka (acknowledged).
pub(crate) const SHIPPER_DELIVERED_EVENTS_TOTAL: &str = "agent_shipper_delivered_events_total";
/// Gauge, bytes: local log not yet acknowledged by Kafka (the warm backlog).
pub(crate) const SHIPPER_BACKLOG_BYTES: &str = "agent_shipper_backlog_bytes";
/// Gauge: events sent to Kafka and not yet acknowledged.
pub(crate) const SHIPPER_PENDING_EVENTS: &str = "agent_shipper_pending_events";
/// Counter: failed deliveries (each one resends from the checkpoint).
pub(crate) const SHIPPER_SEND_ERRORS_TOTAL: &str = "agent_shipper_send_errors_total";
/// Gauge, Unix seconds: when Kafka last acknowledged an event.
pub(crate) const SHIPPER_LAST_DELIVERY_SECONDS: &str =
    "agent_shipper_last_delivery_timestamp_seconds";
/// Counter: local log lines that are not records (cut short by a crash) and were not shipped.
pub(crate) const SHIPPER_SKIPPED_LINES_TOTAL: &str = "agent_shipper_skipped_lines_total";
/// Counter `{reason}`: events Kafka can never take (too large), kept in the cold path only.
pub(crate) const SHIPPER_DROPPED_EVENTS_TOTAL: &str = "agent_shipper_dropped_events_total";
/// Counter `{reason}`: admin API requests refused before they reached a route: `missing` or
/// `wrong` token, a token of the other `scope`, `throttled` (too many failures from its address).
pub(crate) const ADMIN_AUTH_FAILURES_TOTAL: &str = "agent_admin_auth_failures_total";
/// Counter `{reason}`: admin API connections closed unserved: at the `cap`, or a TLS
/// `handshake` that failed or timed out.
pub(crate) const ADMIN_CONNECTIONS_REFUSED_TOTAL: &str = "agent_admin_connections_refused_total";
/// Counter `{kind}`: Kafka refused the shipper: `authentication` (user or password),
/// `tls` (a certificate refused either way), `authorization` (an ACL), `other`.
pub(crate) const SHIPPER_KAFKA_ERRORS_TOTAL: &str = "agent_shipper_kafka_errors_total";
/// Counter: log files removed (by retention) before they were shipped.
pub(crate) const SHIPPER_LOST_FILES_TOTAL: &str = "agent_shipper_lost_files_total";
/// Counter: hourly log files rolled into Parquet.
pub(crate) const ROLLER_FILES_TOTAL: &str = "agent_roller_files_total";
/// Counter: rows written by the roller.
pub(crate) const ROLLER_ROWS_TOTAL: &str = "agent_roller_rows_total";
/// Counter, bytes: Parquet bytes written by the roller.
pub(crate) const ROLLER_WRITTEN_BYTES_TOTAL: &str = "agent_roller_written_bytes_total";
/// Counter: raw lines that are not records, skipped by the roller.
pub(crate) const ROLLER_SKIPPED_LINES_TOTAL: &str = "agent_roller_skipped_lines_total";
/// Counter: rolls that failed (retried on the next pass).
pub(crate) const ROLLER_ERRORS_TOTAL: &str = "agent_roller_errors_total";
/// Gauge `{kind}`, bytes: raw log and Parquet files on disk.
pub(crate) const DISK_USED_BYTES: &str = "agent_disk_used_bytes";
/// Gauge, bytes: the disk budget (`--max-disk-bytes`), when one is set.
pub(crate) const DISK_BUDGET_BYTES: &str = "agent_disk_budget_bytes";
/// Counter `{kind, reason}`: files removed by retention (`age` or `budget`).
pub(crate) const RETENTION_DELETED_FILES_TOTAL: &str = "agent_retention_deleted_files_total";
/// Gauge, seconds: latency added to every metadata request by fault injection (0 when off).
pub(crate) const FAULT_LATENCY_SECONDS: &str = "imds_fault_latency_seconds";
/// Gauge: share of metadata requests failed with 500 by fault injection (0 when off).
pub(crate) const FAULT_ERROR_RATIO: &str = "imds_fault_error_ratio";
/// Gauge `{version, cluster, machine}`, always 1: which build runs where.
pub(crate) const BUILD_INFO: &str = "agent_build_info";

/// `# HELP` of the two request histograms, which `http/request_metrics.rs` renders itself (every
/// other metric is described to the recorder in [`describe`]).
pub(crate) const DURATION_HELP: &str = "Time from a request's arrival to its response being ready.";
pub(crate) const SIZE_HELP: &str = "Size of response bodies.";

/// Latency buckets from 10 µs to 5 s: a metadata answer from memory takes tens of microseconds,
/// so fine low buckets are what make p90/p99 meaningful; the high ones catch stalls.
pub(crate) const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Response sizes from a bare leaf value to a large instance document.
pub(crate) const SIZE_BUCKETS: &[f64] = &[
    16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

/// Installs the global Prometheus recorder and describes every metric.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    // The request histograms are kept and rendered by `http::request_metrics`, not the recorder
    // (the caller enables them: this module sits below the request path).
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe();
    // Exists from the start, at 0: "nobody was throttled" rather than "no data".
    metrics::counter!(THROTTLED_REQUESTS_TOTAL).increment(0);
    Ok(handle)
}

fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Metadata API responses by matched endpoint, api-version, format and status code."
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Metadata API requests being served."
    );
    describe_gauge!(
        OPEN_CONNECTIONS,
        Unit::Count,
        "Connections open to the metadata API."
    );
    describe_counter!(
        CONNECTIONS_CLOSED_TOTAL,
        Unit::Count,
        "Metadata API connections closed by the agent, by reason: idle_timeout, header_timeout, evicted, refused."
    );
    describe_gauge!(
        HELD_REQUESTS,
        Unit::Count,
        "wait-for-change requests held until their document changes."
    );
    describe_counter!(
        THROTTLED_REQUESTS_TOTAL,
        Unit::Count,
        "Requests refused with 429 by the per-caller rate limit."
    );
    describe_gauge!(
        METADATA_AGE_SECONDS,
        Unit::Seconds,
        "Seconds since the served metadata was last confirmed current by its source."
    );
    describe_counter!(
        METADATA_RELOADS_TOTAL,
        Unit::Count,
        "Metadata documents loaded from the source."
    );
    describe_counter!(
        METADATA_RELOAD_ERRORS_TOTAL,
        Unit::Count,
        "Metadata loads refused: invalid document or unreachable upstream; the last good document stays served."
    );
    describe_counter!(
        LOG_EVENTS_TOTAL,
        Unit::Count,
        "Log events accepted by the local log (written or dropped), by level."
    );
    describe_counter!(
        LOG_DROPPED_EVENTS_TOTAL,
        Unit::Count,
        "Log events dropped because the log writer fell behind."
    );
    describe_counter!(
        SHIPPER_DELIVERED_EVENTS_TOTAL,
        Unit::Count,
        "Events the warm shipper delivered to Kafka (acknowledged)."
    );
    describe_gauge!(
        SHIPPER_BACKLOG_BYTES,
        Unit::Bytes,
        "Local log bytes not yet acknowledged by Kafka."
    );
    describe_gauge!(
        SHIPPER_PENDING_EVENTS,
        Unit::Count,
        "Events sent to Kafka and not yet acknowledged."
    );
    describe_counter!(
        SHIPPER_SEND_ERRORS_TOTAL,
        Unit::Count,
        "Failed deliveries to Kafka; each resends from the checkpoint."
    );
    describe_gauge!(
        SHIPPER_LAST_DELIVERY_SECONDS,
        Unit::Seconds,
        "Unix time of the last event Kafka acknowledged."
    );
    describe_counter!(
        SHIPPER_SKIPPED_LINES_TOTAL,
        Unit::Count,
        "Local log lines that are not records and were not shipped."
    );
    describe_counter!(
        SHIPPER_DROPPED_EVENTS_TOTAL,
        Unit::Count,
        "Events Kafka can never take, kept in the cold path only."
    );
    describe_counter!(
        ADMIN_AUTH_FAILURES_TOTAL,
        Unit::Count,
        "Admin API requests refused by authentication, by reason: missing, wrong, scope, throttled."
    );
    describe_counter!(
        ADMIN_CONNECTIONS_REFUSED_TOTAL,
        Unit::Count,
        "Admin API connections closed unserved, by reason: cap, handshake."
    );
    describe_counter!(
        SHIPPER_KAFKA_ERRORS_TOTAL,
        Unit::Count,
        "Errors Kafka reported to the shipper, by kind: authentication, tls, authorization, other."
    );
    describe_counter!(
        SHIPPER_LOST_FILES_TOTAL,
        Unit::Count,
        "Log files removed before they were shipped."
    );
    describe_counter!(
        ROLLER_FILES_TOTAL,
        Unit::Count,
        "Hourly log files rolled into Parquet."
    );
    describe_counter!(
        ROLLER_ROWS_TOTAL,
        Unit::Count,
        "Rows written by the roller."
    );
    describe_counter!(
        ROLLER_WRITTEN_BYTES_TOTAL,
        Unit::Bytes,
        "Parquet bytes written by the roller."
    );
    describe_counter!(
        ROLLER_SKIPPED_LINES_TOTAL,
        Unit::Count,
        "Raw lines that are not records, skipped by the roller."
    );
    describe_counter!(
        ROLLER_ERRORS_TOTAL,
        Unit::Count,
        "Rolls that failed and are retried."
    );
    describe_gauge!(
        DISK_USED_BYTES,
        Unit::Bytes,
        "Raw log and Parquet bytes on disk, by kind."
    );
    describe_gauge!(
        DISK_BUDGET_BYTES,
        Unit::Bytes,
        "The disk budget for raw and Parquet log files, when one is set."
    );
    describe_counter!(
        RETENTION_DELETED_FILES_TOTAL,
        Unit::Count,
        "Files removed by retention, by kind and reason."
    );
    describe_gauge!(
        FAULT_LATENCY_SECONDS,
        Unit::Seconds,
        "Latency added to every metadata request by fault injection (admin API); 0 when off."
    );
    describe_gauge!(
        FAULT_ERROR_RATIO,
        Unit::Count,
        "Share of metadata requests failed with 500 by fault injection (admin API); 0 when off."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; labels say which agent version runs on which cluster and machine."
    );
}
