//! Aggregations over hours the compaction rolled up are answered from the rollups, and equal
//! what raw rows answer: hours with late rows since, range edges off the hour and the hours
//! outside the rollups come from raw rows; `EXPLAIN` shows which; `SET logs.rollups = off`
//! plans on raw rows only.

use crate::fixtures::{compact_and_vacuum, records, write_delta};
use logrecord::{LogRecord, Uuid};
use std::path::Path;

/// The standard output of `input` (statements separated by `;`) piped into `query --format csv`,
/// which must succeed.
fn piped(root: &Path, input: &str) -> String {
    crate::fixtures::stdout(&crate::fixtures::query_piped(root, input))
}

#[test]
fn aggregations_over_rolled_up_hours_read_the_rollups_and_equal_raw_rows() {
    let dir = tempfile::tempdir().unwrap();
    let records = records();
    write_delta(dir.path(), &records, 2);
    compact_and_vacuum(dir.path());
    // Rows that arrive for 2026-01-01 01:00 (cluster c1) after it was rolled up: that hour is
    // no longer held exactly, and is read raw.
    let late: Vec<LogRecord> = records
        .iter()
        .filter(|r| r.cluster == "c1" && r.timestamp.format("%d%H").to_string() == "0101")
        .take(4)
        .enumerate()
        .map(|(i, r)| LogRecord {
            id: Uuid::from_u64_pair(0x1a7e, i as u64),
            seq: r.seq + 50_000,
            latency_us: Some(9_000 + i as u64),
            ..r.clone()
        })
        .collect();
    write_delta(dir.path(), &late, 1);

    let answered_from_rollups = [
        "SELECT status, count(*) AS n FROM logs GROUP BY status ORDER BY status",
        "SELECT count(*) AS n, sum(latency_us) AS total, min(latency_us) AS lo, max(latency_us) AS hi FROM logs",
        "SELECT cluster, date, count(*) AS n, avg(latency_us) AS mean, count(latency_us) AS timed \
         FROM logs WHERE level IN ('WARN', 'ERROR') GROUP BY cluster, date ORDER BY cluster, date",
        "SELECT path, count(*) AS n FROM logs WHERE \"timestamp\" >= '2026-01-01T01:30:00Z' \
         AND \"timestamp\" < '2026-01-02T02:00:00Z' AND path IS NOT NULL GROUP BY path ORDER BY path",
        "SELECT api_version, sum(response_bytes) AS bytes FROM logs WHERE cluster = 'c1' \
         GROUP BY api_version ORDER BY api_version",
        "SELECT message, count(*) AS n FROM logs WHERE level = 'ERROR' GROUP BY message ORDER BY message",
        "SELECT machine, count(*) AS n FROM logs WHERE machine IN ('m1', 'm3') GROUP BY machine ORDER BY machine",
        // Time buckets of whole hours, as Grafana's $__timeGroupAlias and SQL write them.
        "SELECT floor(extract(epoch from \"timestamp\")/7200)*7200 AS \"time\", CAST(status AS VARCHAR) AS metric, \
         count(*) AS value FROM logs WHERE \"timestamp\" BETWEEN '2026-01-01T00:30:00Z' AND '2026-01-02T23:59:59Z' \
         AND status IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT date_trunc('day', \"timestamp\") AS day, count(*) AS n, max(latency_us) AS slowest FROM logs GROUP BY 1 ORDER BY 1",
        "SELECT cluster, date_bin(INTERVAL '1 hour', \"timestamp\") AS bucket, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
    ];
    for sql in answered_from_rollups {
        let on = piped(dir.path(), &format!("{sql};"));
        let off = piped(dir.path(), &format!("SET logs.rollups = off;\n{sql};"));
        assert_eq!(on, off, "{sql}");
        assert!(on.lines().count() >= 2, "{sql}: {on}");
        let plan = piped(dir.path(), &format!("EXPLAIN {sql};"));
        assert!(plan.contains("logs_hourly_by_"), "{sql}: {plan}");
        let raw_plan = piped(
            dir.path(),
            &format!("SET logs.rollups = off;\nEXPLAIN {sql};"),
        );
        assert!(!raw_plan.contains("_by_"), "{sql}: {raw_plan}");
    }
    // Whole days: 2026-01-02 from the daily rollup, 2026-01-01 (late rows in one hour, its day
    // no longer adds up) from its hours. Statements bucketed finer than a day, or over a range
    // that cuts 2026-01-02, read no day.
    for (sql, reads_a_day) in [
        (answered_from_rollups[0], true),
        (answered_from_rollups[2], true),
        (answered_from_rollups[4], true),
        (answered_from_rollups[6], true),
        (answered_from_rollups[8], true),
        (answered_from_rollups[3], false),
        (answered_from_rollups[7], false),
        (answered_from_rollups[9], false),
    ] {
        let plan = piped(dir.path(), &format!("EXPLAIN {sql};"));
        assert_eq!(
            plan.contains("logs_daily_by_"),
            reads_a_day,
            "{sql}: {plan}"
        );
        // The day's file is the one read; 2026-01-01's is not.
        for line in plan.lines().filter(|l| l.contains("_rollups/daily_by_")) {
            assert!(
                line.contains("/date=2026-01-02/") && !line.contains("/date=2026-01-01/"),
                "{sql}: {line}"
            );
        }
    }
    // A setting that is not on or off: a clear error, and the session's statements still run.
    let bad = crate::fixtures::query_piped(
        dir.path(),
        "SET logs.rollups = maybe;\nSELECT count(*) AS n FROM logs;",
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("SET logs.rollups: \"maybe\" is not on or off"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&bad.stdout),
        format!("n\n{}\n", records.len() + late.len())
    );
    // The late rows are counted: the raw total, not the rollups' alone.
    assert_eq!(
        piped(dir.path(), "SELECT count(*) AS n FROM logs;"),
        format!("n\n{}\n", records.len() + late.len())
    );

    // Percentiles from the sketches: within their 1% of the exact value at rank q x (n - 1) of
    // each group's latencies (late rows included).
    let p90 = "SELECT cluster, date, approx_percentile_cont(latency_us, 0.9) AS p90 FROM logs \
               WHERE latency_us IS NOT NULL GROUP BY cluster, date ORDER BY cluster, date";
    assert!(piped(dir.path(), &format!("EXPLAIN {p90};")).contains("logs_hourly_by_"));
    let mut latencies: std::collections::BTreeMap<(String, String), Vec<u64>> = Default::default();
    for r in records.iter().chain(&late) {
        latencies
            .entry((
                r.cluster.clone(),
                r.timestamp.format("%Y-%m-%d").to_string(),
            ))
            .or_default()
            .extend(r.latency_us);
    }
    let answer = piped(dir.path(), &format!("{p90};"));
    let answered: Vec<&str> = answer.lines().skip(1).collect();
    assert_eq!(answered.len(), latencies.len(), "{answer}");
    for (line, ((cluster, date), mut values)) in answered.iter().zip(latencies) {
        values.sort_unstable();
        let exact = values[(0.9 * (values.len() - 1) as f64).floor() as usize] as f64;
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[..2], [cluster.as_str(), date.as_str()], "{answer}");
        let estimate: f64 = fields[2].parse().unwrap();
        // The sketch's 1%, and the integer the answer is given as.
        assert!(
            (estimate - exact).abs() <= 0.01 * exact + 1.0,
            "{line}: exact {exact}"
        );
    }

    let answered_from_raw_rows = [
        "SELECT count(DISTINCT machine) AS machines FROM logs",
        "SELECT date_trunc('minute', \"timestamp\") AS m, count(*) AS n FROM logs GROUP BY 1",
        "SELECT status, count(*) AS n FROM logs WHERE message LIKE 'request%' GROUP BY status",
    ];
    for sql in answered_from_raw_rows {
        let plan = piped(dir.path(), &format!("EXPLAIN {sql};"));
        assert!(!plan.contains("logs_hourly_by_"), "{sql}: {plan}");
    }
}

/// Through `query serve` (psql, simple protocol): the same answers, the rollup in `EXPLAIN`, and
/// `SET logs.rollups = off` for that session only.
#[test]
fn the_server_answers_from_the_rollups_per_session() {
    let dir = tempfile::tempdir().unwrap();
    write_delta(dir.path(), &records(), 2);
    compact_and_vacuum(dir.path());
    let server = crate::serve::Server::start(dir.path(), &[]);
    let sql = "SELECT cluster, status, count(*) AS n FROM logs GROUP BY cluster, status ORDER BY cluster, status";
    let explain = format!("EXPLAIN {sql}");
    let run = |statements: &[&str]| {
        let output = crate::serve::psql(&server.conninfo(), statements);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let from_rollups = run(&[sql]);
    assert_eq!(from_rollups, piped(dir.path(), &format!("{sql};")));
    // Both days are whole and closed: read from the daily rollup, and no raw row is left to
    // read, so the table is not scanned at all.
    let plan = run(&[&explain]);
    assert!(plan.contains("logs_daily_by_status"), "{plan}");
    assert!(!plan.contains("TableScan: logs "), "{plan}");
    let off = run(&["SET logs.rollups = off", sql, &explain]);
    assert!(off.starts_with(&format!("SET\n{from_rollups}")), "{off}");
    assert!(!off.contains("_by_status"), "{off}");
    // Another session still reads the rollups.
    assert!(run(&[&explain]).contains("logs_daily_by_status"));
}

/// The logs dashboard's panels, their SQL as Grafana sends it with every machine selected, are
/// answered from the rollups through `query serve`; with one machine selected the hours that
/// hold others are read raw, and the answers are the raw rows' either way.
#[test]
fn dashboard_panels_read_the_rollups_when_every_machine_is_selected() {
    let dir = tempfile::tempdir().unwrap();
    write_delta(dir.path(), &records(), 2);
    compact_and_vacuum(dir.path());
    let server = crate::serve::Server::start(dir.path(), &[]);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dashboards/logs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panel = |title: &str| {
        let panel = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title}"));
        crate::serve::expand(
            panel["targets"][0]["rawSql"].as_str().unwrap(),
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            3600,
        )
    };
    let run = |statements: &[&str]| {
        let output = crate::serve::psql(&server.conninfo(), statements);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    // Hour buckets read the hourly rollup; the panels without a time bucket read the daily one
    // (whole closed days), checked against `daily_by_machine` as hours are against
    // `hourly_by_machine`.
    for (title, rollup) in [
        ("Requests by path", "logs_daily_by_path"),
        ("Responses by status", "logs_hourly_by_status"),
        ("api-version asked for", "logs_daily_by_api_version"),
    ] {
        let all_machines = panel(title);
        assert!(
            all_machines.contains("\"machine\" IN ('m1','m2','m3')"),
            "{all_machines}"
        );
        let answer = run(&[&all_machines]);
        assert!(answer.lines().count() >= 2, "{title}: {answer}");
        assert_eq!(
            run(&["SET logs.rollups = off", &all_machines]),
            format!("SET\n{answer}"),
            "{title}"
        );
        let plan = run(&[&format!("EXPLAIN {all_machines}")]);
        assert!(plan.contains(rollup), "{title}: {plan}");

        // m1 shares its hours with m2 (cluster c1) and m3 (c2): every hour is read raw.
        let one_machine = all_machines.replace("IN ('m1','m2','m3')", "IN ('m1')");
        let plan = run(&[&format!("EXPLAIN {one_machine}")]);
        assert!(!plan.contains("_by_"), "{title}: {plan}");
        // Cluster c2 alone holds only m3: with m3 selected, its hours come from the rollup.
        let c2 = all_machines
            .replace("IN ('c1','c2')", "IN ('c2')")
            .replace("IN ('m1','m2','m3')", "IN ('m3')");
        assert!(run(&[&format!("EXPLAIN {c2}")]).contains(rollup), "{title}");
        assert_eq!(
            run(&[&c2]),
            run(&["SET logs.rollups = off", &c2])
                .trim_start_matches("SET\n")
                .to_owned(),
            "{title}"
        );
    }
}

/// A bounded dimension folded under `(other)` in an hour (more distinct paths than the bound):
/// a statement that groups or filters by it reads that hour raw, so its answer never shows
/// `(other)` and equals the raw one; the other hours still come from the rollup.
#[test]
fn hours_with_folded_values_are_read_raw_for_statements_that_use_that_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = records();
    // 2026-01-01 00:00 in c1: 150 distinct paths, more than the 100 kept per cluster and hour.
    for (i, r) in records
        .iter_mut()
        .filter(|r| r.cluster == "c1" && r.timestamp.format("%d%H").to_string() == "0100")
        .enumerate()
    {
        r.path = Some(format!("/metadata/instance/flood{i}"));
    }
    let mut flood: Vec<LogRecord> = (0..130u64)
        .map(|i| {
            let mut r = records[0].clone();
            r.id = Uuid::from_u64_pair(0xf100d, i);
            r.seq = 90_000 + i;
            r.path = Some(format!("/metadata/instance/more{i}"));
            r
        })
        .collect();
    records.append(&mut flood);
    write_delta(dir.path(), &records, 1);
    compact_and_vacuum(dir.path());
    assert!(
        piped(
            dir.path(),
            "SELECT count(*) AS n FROM logs_hourly_by_path WHERE path = '(other)';"
        )
        .starts_with("n\n1\n"),
        "the flood hour holds (other)"
    );
    let by_path =
        "SELECT path, count(*) AS n FROM logs WHERE path IS NOT NULL GROUP BY path ORDER BY path";
    let on = piped(dir.path(), &format!("{by_path};"));
    let off = piped(dir.path(), &format!("SET logs.rollups = off;\n{by_path};"));
    assert_eq!(on, off);
    assert!(!on.contains("(other)"), "{on}");
    // Header, the usual path, the 20 renamed and the 130 added.
    assert_eq!(on.lines().count(), 1 + 1 + 20 + 130, "{on}");
    assert!(
        piped(dir.path(), &format!("EXPLAIN {by_path};")).contains("logs_hourly_by_path"),
        "the other hours still read the rollup"
    );
    // A total does not use the path: every hour from the rollup, (other) included.
    let total = "SELECT count(*) AS n FROM logs";
    assert_eq!(
        piped(dir.path(), &format!("{total};")),
        format!("n\n{}\n", records.len())
    );
}
