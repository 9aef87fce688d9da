//! The daily rollups against the raw rows of each day: a run that died between its hours and
//! its days, and the per-day bound on a dimension's values.

use super::tests::{assert_exact, far_future, rollup_lines, start, warm_table};
use super::*;
use chrono::Duration as ChronoDuration;
use logrecord::{Level, LogRecord};
use uuid::Uuid;

#[tokio::test]
async fn days_a_run_did_not_reach_are_built_by_the_next_from_the_hours() {
    let (_dir, url) = warm_table(&mut super::tests::records(0, 30, 60, 11)).await;
    build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // As if the run had died after committing its hours, before its days: no daily table.
    for rollup in &DAILY {
        let dir = rollup
            .location(&url)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_file_path()
            .unwrap_or_else(|()| panic!("a local table"));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let report = build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.hours_built, 0);
    assert_eq!(report.days_built, 2 * DAILY.len());
    assert_exact(&url).await;
    let by_status = rollup_lines(
        &url,
        &DAILY[0],
        "SELECT CAST(\"date\" AS VARCHAR) AS d, CAST(day_start AS VARCHAR) AS s, sum(\"rows\") AS n FROM r GROUP BY 1, 2 ORDER BY 1",
    )
    .await;
    assert_eq!(
        by_status[3..5],
        [
            "| 2026-03-01 | 2026-03-01T00:00:00Z | 1440 |",
            "| 2026-03-02 | 2026-03-02T00:00:00Z | 360  |",
        ],
        "{by_status:#?}"
    );
}

/// The `n`th request, for `path` in the hour `hour` after `start()`.
fn request(n: u64, hour: i64, path: &str) -> LogRecord {
    LogRecord {
        path: Some(path.to_owned()),
        status: Some(200),
        latency_us: Some(100 + n),
        ..LogRecord::new(
            n,
            Uuid::from_u128(u128::from(n) + 1),
            start() + ChronoDuration::hours(hour) + ChronoDuration::milliseconds(n as i64),
            Level::Info,
            "imds::request",
            "request",
            "east",
            "host-1",
        )
    }
}

#[tokio::test]
async fn a_day_keeps_its_most_frequent_values_and_folds_a_dimension_an_hour_folded() {
    // Cluster "east": hour 0 has 2 paths a few times each, hour 1 the same 2 and 12 others
    // (3 each), hour 2 only "b". With a bound of 10 per hour, hour 1 folds 4 of its paths; so
    // the day folds every path of "east" (which paths hour 1 folded is not known) and keeps
    // its total. In "west", 12 paths over 2 hours, never folded in an hour, more than 10 in the
    // day: the day keeps the 10 with the most rows.
    let mut rows = Vec::new();
    let mut n = 0u64;
    let mut add = |hour: i64, path: &str, times: usize, cluster: &str| {
        for _ in 0..times {
            n += 1;
            let mut record = request(n, hour, path);
            record.cluster = cluster.to_owned();
            rows.push(record);
        }
    };
    add(0, "/a", 5, "east");
    add(0, "/b", 4, "east");
    add(1, "/a", 6, "east");
    add(1, "/b", 6, "east");
    for k in 0..12 {
        add(1, &format!("/x{k:02}"), 3, "east");
    }
    add(2, "/b", 2, "east");
    for k in 0..12 {
        add(k % 2, &format!("/w{k:02}"), 1 + k as usize, "west");
    }
    let total_east = 5 + 4 + 6 + 6 + 36 + 2;
    let (_dir, url) = warm_table(&mut rows).await;
    build_closed_hours(&url, far_future(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let by_path = ROLLUPS[1]
        .daily()
        .unwrap_or_else(|| panic!("hourly_by_path has a daily rollup"));
    assert_eq!(by_path.name, "daily_by_path");
    let day = rollup_lines(
        &url,
        &by_path,
        "SELECT CAST(\"cluster\" AS VARCHAR) AS c, path, \"rows\", latency_us_count AS lc FROM r ORDER BY c, \"rows\" DESC, path",
    )
    .await;
    let mut expected = vec![format!(
        "| east | (other) | {total_east:<4} | {total_east:<2} |"
    )];
    // west: /w11 has 12 rows ... /w00 1; the 10 most kept, /w01 and /w00 folded (1 + 2 rows).
    for k in (3..12).rev() {
        expected.push(format!(
            "| west | /w{k:02}    | {:<4} | {:<2} |",
            k + 1,
            k + 1
        ));
    }
    expected.push("| west | (other) | 3    | 3  |".to_owned());
    expected.push("| west | /w02    | 3    | 3  |".to_owned());
    assert_eq!(day[3..day.len() - 1], expected, "{day:#?}");
}
