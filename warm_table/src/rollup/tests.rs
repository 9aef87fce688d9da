//! The rollups against the raw rows they summarise, each compared by DataFusion's own GROUP BY
//! over the warm table: many hours, late rows, reruns, runs killed at any point, two builds at
//! once, and a flood of distinct paths.

use super::*;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use datafusion::prelude::SessionContext;
use logrecord::{Level, LogRecord};
use std::time::Duration;
use uuid::Uuid;

pub(super) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("a valid time"))
}

/// `per_hour` events in each of `hours` hours from `first_hour`, over three clusters: request
/// events of a few paths, statuses, api-versions and latencies, and warnings and errors.
pub(super) fn records(first_hour: i64, hours: i64, per_hour: u64, seed: u64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for hour in first_hour..first_hour + hours {
        for n in 0..per_hour {
            let k = n.wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000;
            let timestamp = start()
                + ChronoDuration::hours(hour)
                + ChronoDuration::microseconds((n * 3_600_000_000 / per_hour) as i64);
            let cluster = format!("cluster-{}", k % 3);
            let machine = format!("host-{}", k % 7);
            let id = Uuid::from_u128(((seed as u128) << 64) | ((hour as u128) << 32) | n as u128);
            let record = if k % 10 < 8 {
                LogRecord {
                    method: Some("GET".to_owned()),
                    path: Some(format!(
                        "/metadata/instance/{}",
                        ["compute", "network", "compute/vmId"][(k % 3) as usize]
                    )),
                    api_version: (k % 5 != 0).then(|| format!("2021-0{}-01", 1 + k % 4)),
                    format: Some(if k % 2 == 0 { "json" } else { "text" }.to_owned()),
                    status: Some([200, 200, 200, 400, 404, 429][(k % 6) as usize]),
                    latency_us: (k % 11 != 0).then_some(10 + k * 37),
                    response_bytes: Some(100 + k),
                    ..LogRecord::new(
                        n,
                        id,
                        timestamp,
                        Level::Info,
                        "imds::request",
                        "request",
                        cluster,
                        machine,
                    )
                }
            } else {
                let level = if k % 10 == 8 {
                    Level::Warn
                } else {
                    Level::Error
                };
                let message = match k % 4 {
                    0 => format!("upstream refused: code {}", k % 5),
                    1 => format!("cache for host-{} expired after {k} ms", k % 7),
                    2 => format!(
                        "disk /dev/sd{} is {}% full",
                        ["a", "b"][(hour % 2) as usize],
                        k % 100
                    ),
                    _ => "token refresh failed".to_owned(),
                };
                LogRecord::new(
                    n,
                    id,
                    timestamp,
                    level,
                    "imds::upstream",
                    message,
                    cluster,
                    machine,
                )
            };
            out.push(record);
        }
    }
    out
}

pub(super) async fn warm_table(records: &mut [LogRecord]) -> (tempfile::TempDir, Url) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = Url::from_directory_path(dir.path()).unwrap_or_else(|()| panic!("a directory"));
    crate::write_records(&url, records)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (dir, url)
}

/// Rows of `sql` as text lines, one per row.
pub(super) async fn lines(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts that every rollup holds, for every hour (or day) of the warm table, exactly the
/// GROUP BY of its raw rows (no bounding: the fixtures have fewer distinct values than the bound).
pub(super) async fn assert_exact(url: &Url) {
    let ctx = SessionContext::new();
    let raw = crate::open(url).await.unwrap_or_else(|e| panic!("{e:#}"));
    raw.update_datafusion_session(&ctx.state())
        .unwrap_or_else(|e| panic!("{e}"));
    ctx.register_table(
        "raw",
        raw.table_provider().await.unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for rollup in ROLLUPS.iter().chain(&DAILY) {
        let table = crate::open(&rollup.location(url).unwrap_or_else(|e| panic!("{e}")))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        table
            .update_datafusion_session(&ctx.state())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = ctx.deregister_table("rollup");
        ctx.register_table(
            "rollup",
            table
                .table_provider()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Pattern ids are not in the raw table: that rollup is compared summed over them
        // (`pattern_ids_*` below check the ids themselves).
        let dims: Vec<&str> = rollup
            .dimensions
            .iter()
            .filter(|d| **d != Dimension::Pattern)
            .map(|d| d.column())
            .collect();
        let dims = dims.join(", ");
        // A daily rollup against the raw rows of each day.
        let (hour, period) = match rollup.resolution {
            Resolution::Hour => ("CAST(hour AS VARCHAR)", "\"date\", \"hour\""),
            Resolution::Day => ("'-'", "\"date\""),
        };
        let keys = format!(
            "CAST(date AS VARCHAR) AS d, {hour} AS h, CAST(cluster AS VARCHAR) AS c, {dims}"
        );
        let order = format!("ORDER BY d, h, c, {dims}");
        let rollup_rows = if rollup.dimensions.contains(&Dimension::Pattern) {
            format!(
                "(SELECT {period}, \"cluster\", {dims}, sum(\"rows\") AS \"rows\", min(first_seen) AS first_seen, max(last_seen) AS last_seen, \
                 sum(latency_us_count) AS latency_us_count, sum(latency_us_sum) AS latency_us_sum, min(latency_us_min) AS latency_us_min, max(latency_us_max) AS latency_us_max, \
                 sum(response_bytes_count) AS response_bytes_count, sum(response_bytes_sum) AS response_bytes_sum, min(response_bytes_min) AS response_bytes_min, max(response_bytes_max) AS response_bytes_max \
                 FROM rollup GROUP BY {period}, \"cluster\", {dims})"
            )
        } else {
            "rollup".to_owned()
        };
        let expected = lines(&ctx, &format!(
            "SELECT {keys}, count(*) AS n, CAST(min(\"timestamp\") AS VARCHAR) AS first, CAST(max(\"timestamp\") AS VARCHAR) AS last, \
             count(latency_us) AS lc, sum(latency_us) AS ls, min(latency_us) AS lmin, max(latency_us) AS lmax, \
             count(response_bytes) AS bc, sum(response_bytes) AS bs, min(response_bytes) AS bmin, max(response_bytes) AS bmax \
             FROM raw GROUP BY {period}, cluster, {dims} {order}")).await;
        let actual = lines(&ctx, &format!(
            "SELECT {keys}, rows AS n, CAST(first_seen AS VARCHAR) AS first, CAST(last_seen AS VARCHAR) AS last, \
             latency_us_count AS lc, latency_us_sum AS ls, latency_us_min AS lmin, latency_us_max AS lmax, \
             response_bytes_count AS bc, response_bytes_sum AS bs, response_bytes_min AS bmin, response_bytes_max AS bmax \
             FROM {rollup_rows} {order}")).await;
        assert!(
            expected.len() > 10,
            "{}: too few groups to mean anything",
            rollup.name
        );
        assert_eq!(actual, expected, "{} against the raw rows", rollup.name);
    }
}

/// The rows of the rollup `rollup` as `sql` over it (as the table `r`) gives them.
pub(super) async fn rollup_lines(url: &Url, rollup: &Rollup, sql: &str) -> Vec<String> {
    let table = rollup
        .open(url)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
        .unwrap_or_else(|| panic!("{} was built", rollup.name));
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .unwrap_or_else(|e| panic!("{e}"));
    ctx.register_table(
        "r",
        table
            .table_provider()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lines(&ctx, sql).await
}

/// The report of a run that found every hour built: only the dictionaries' size.
pub(super) fn nothing_built(patterns_held: usize) -> BuildReport {
    BuildReport {
        patterns: patterns::PatternReport {
            held: patterns_held,
            ..Default::default()
        },
        ..BuildReport::default()
    }
}

pub(super) fn far_future() -> DateTime<Utc> {
    start() + ChronoDuration::days(365)
}

#[tokio::test]
async fn every_closed_hour_is_exact_and_a_rerun_builds_nothing() {
    let (_dir, url) = warm_table(&mut records(0, 30, 200, 1)).await;
    // Hours from 20 on are not closed yet: not built.
    let closed_before = start() + ChronoDuration::hours(20);
    let report = build_closed_hours(&url, closed_before, DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.hours_built, 20 * ROLLUPS.len());
    assert_eq!(report.raw_rows, 20 * 200 * ROLLUPS.len() as u64);
    // Hours 0 to 19 are on the first day.
    assert_eq!(report.days_built, DAILY.len());
    let by_status = crate::open(&ROLLUPS[0].location(&url).unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let totals = hour_totals(&by_status)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(totals.len(), 20);
    assert!(totals.values().all(|rows| *rows == 200));

    let report = build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.hours_built, 10 * ROLLUPS.len());
    // Hours 20 to 23 of the first day, 0 to 5 of the second: both days built.
    assert_eq!(report.days_built, 2 * DAILY.len());
    assert_exact(&url).await;
    // Rows per raw row, per rollup: hours 20 to 29, 200 events each over 3 clusters.
    assert_eq!(report.per_rollup.len(), ROLLUPS.len());
    assert!(
        report
            .per_rollup
            .values()
            .all(|(raw, rows)| *raw == 2000 && *rows < *raw)
    );
    assert!(
        report
            .rows_per_raw_row()
            .starts_with("hourly_by_api_version "),
        "{}",
        report.rows_per_raw_row()
    );
    let again = build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(again, nothing_built(12));
}

#[tokio::test]
async fn late_rows_rebuild_their_hour_only() {
    let (_dir, url) = warm_table(&mut records(0, 12, 150, 2)).await;
    build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // 40 late events for hour 5, in a commit of their own.
    crate::write_records(&url, &mut records(5, 1, 40, 3))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.hours_built, ROLLUPS.len());
    assert_eq!(report.raw_rows, 190 * ROLLUPS.len() as u64);
    assert_eq!(report.days_built, DAILY.len());
    assert_exact(&url).await;
}

#[tokio::test]
async fn runs_killed_at_any_point_or_run_twice_at_once_never_count_a_row_twice() {
    let (_dir, url) = warm_table(&mut records(0, 8, 120, 4)).await;
    // Killed: the run's future dropped after a growing time, as a process killed mid-run.
    for millis in [1u64, 5, 20, 50, 100, 200, 400] {
        let _ = tokio::time::timeout(
            Duration::from_millis(millis),
            build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES),
        )
        .await;
    }
    // Late rows, then two builds at once: one may lose its commits to the other.
    crate::write_records(&url, &mut records(3, 2, 30, 5))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (first, second) = tokio::join!(
        build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES),
        build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
    );
    assert!(first.is_ok() || second.is_ok(), "{first:?} {second:?}");
    build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_exact(&url).await;
}

#[tokio::test]
async fn a_flood_of_distinct_paths_adds_at_most_the_bound_and_stays_exact_per_kept_value() {
    // One hour, one cluster: 5,000 requests for 2,000 distinct paths, and 3,000 for 3 paths.
    let mut flood = Vec::new();
    for n in 0..8_000u64 {
        let path = if n < 5_000 {
            format!("/metadata/instance/x{}", n % 2_000)
        } else {
            format!("/metadata/instance/common{}", n % 3)
        };
        let timestamp = start() + ChronoDuration::microseconds(n as i64 * 1000);
        flood.push(LogRecord {
            path: Some(path),
            status: Some(200),
            latency_us: Some(n),
            ..LogRecord::new(
                n,
                Uuid::from_u128(u128::from(n) + 1),
                timestamp,
                Level::Info,
                "imds::request",
                "request",
                "east",
                "host-1",
            )
        });
    }
    let (_dir, url) = warm_table(&mut flood).await;
    build_closed_hours(&url, far_future(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let by_path = ROLLUPS
        .iter()
        .find(|r| r.name == "hourly_by_path")
        .unwrap_or_else(|| panic!("no by_path"));
    let rows = rollup_lines(
        &url,
        by_path,
        "SELECT path, rows, latency_us_count FROM r ORDER BY rows DESC, path",
    )
    .await;
    // Kept: the 3 common paths (1,000 each) and 7 of the flood's (3 each, the smallest names on
    // a tie); everything else under (other): 11 rows, 8,000 in total.
    let expected_head = [
        "| (other)                    | 4979 | 4979             |",
        "| /metadata/instance/common0 | 1000 | 1000             |",
        "| /metadata/instance/common1 | 1000 | 1000             |",
        "| /metadata/instance/common2 | 1000 | 1000             |",
    ];
    assert_eq!(rows.len(), 4 + 11, "{rows:#?}");
    assert_eq!(rows[3..7], expected_head, "{rows:#?}");
    for line in &rows[7..14] {
        assert!(
            line.contains("/metadata/instance/x") && line.contains("| 3    |"),
            "{line}"
        );
    }
    assert_eq!(
        rollup_lines(&url, by_path, "SELECT sum(\"rows\") AS total FROM r").await[3],
        "| 8000  |"
    );
}

#[tokio::test]
async fn retention_trims_the_rollups_to_the_tables_hours() {
    let (dir, url) = warm_table(&mut records(0, 12, 50, 6)).await;
    build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = crate::retain::run(&crate::retain::RetainOptions {
        out: dir.path().to_string_lossy().into_owned(),
        max_age: Duration::from_secs(6 * 3600),
        vacuum_after: Duration::ZERO,
        now: start() + ChronoDuration::hours(12),
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        report.rollup_files_removed >= 6 * ROLLUPS.len(),
        "{report:?}"
    );
    for rollup in &ROLLUPS {
        let table = rollup
            .open(&url)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
            .unwrap_or_else(|| panic!("{} was built", rollup.name));
        let hours: Vec<String> = hour_totals(&table)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
            .into_keys()
            .map(|(_, hour)| hour)
            .collect();
        assert_eq!(
            hours,
            ["06", "07", "08", "09", "10", "11"],
            "{}",
            rollup.name
        );
    }
    // The day cut in two no longer adds up to its hours: the next compaction builds it again.
    let report = build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((report.hours_built, report.days_built), (0, DAILY.len()));
    assert_exact(&url).await;
}
