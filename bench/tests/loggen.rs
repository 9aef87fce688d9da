//! `loggen` writes the store layout, the counts asked for, and the same rows for the same seed.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(out: &std::path::Path, seed: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_loggen"))
        .args([
            "--days",
            "2",
            "--machines",
            "12",
            "--events-per-hour",
            "20",
            "--seed",
            seed,
            "--start",
            "2028-02-28",
            "--out",
        ])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn writes_the_store_layout_deterministically() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run(a.path(), "7");
    run(b.path(), "7");
    run(c.path(), "8");
    let files = logrecord::parquet_file::list(a.path());
    // 2 days x 24 hours x 2 clusters (12 machines, 10 per cluster), across the leap day.
    assert_eq!(files.len(), 2 * 24 * 2);
    assert!(
        files[0]
            .to_string_lossy()
            .contains("date=2028-02-28/hour=00/cluster=cluster-0")
    );
    assert!(files.iter().any(|f| {
        f.to_string_lossy()
            .contains("date=2028-02-29/hour=23/cluster=cluster-1")
    }));
    let rows: Vec<_> = files
        .iter()
        .flat_map(|f| logrecord::parquet_file::read(f).unwrap())
        .collect();
    assert_eq!(rows.len(), 2 * 24 * 12 * 20);
    assert!(
        rows.iter().filter(|r| r.status == Some(200)).count() * 10 > rows.len() * 8,
        "mostly 200s"
    );
    assert!(
        rows.iter().any(|r| r.status == Some(500))
            && rows.iter().any(|r| r.level == logrecord::Level::Error)
    );
    // Ids as the agent makes them: a UUIDv7 of the event's time, a UUIDv4 per request.
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), rows.len(), "ids are unique");
    for r in &rows {
        let (seconds, nanos) = r.id.get_timestamp().unwrap().to_unix();
        assert_eq!(
            (
                seconds as i64 * 1000 + i64::from(nanos / 1_000_000),
                r.id.get_version_num()
            ),
            (r.timestamp.timestamp_millis(), 7)
        );
        assert!(r.request_id.is_none_or(|id| id.get_version_num() == 4));
    }
    let same: Vec<_> = logrecord::parquet_file::list(b.path())
        .iter()
        .flat_map(|f| logrecord::parquet_file::read(f).unwrap())
        .collect();
    assert_eq!(rows, same, "same seed, same rows");
    let other: Vec<_> = logrecord::parquet_file::list(c.path())
        .iter()
        .flat_map(|f| logrecord::parquet_file::read(f).unwrap())
        .collect();
    assert_ne!(rows, other);
}

/// `--format delta --flushes-per-hour 3`: each hour and cluster holds three files, as three
/// collector flushes leave them before compaction.
#[test]
fn delta_stores_hold_one_file_per_flush() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_loggen"))
        .args([
            "--days",
            "1",
            "--machines",
            "12",
            "--events-per-hour",
            "20",
            "--format",
            "delta",
            "--flushes-per-hour",
            "3",
            "--out",
        ])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for hour in ["00", "13", "23"] {
        for cluster in ["cluster-0", "cluster-1"] {
            let dir = out
                .path()
                .join(format!("date=2026-01-01/hour={hour}/cluster={cluster}"));
            assert_eq!(testkit::parquet_files(&dir), 3, "{}", dir.display());
        }
    }
}
