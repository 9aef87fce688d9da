//! `query` against crafted files and statements: no input panics, hangs or takes memory without
//! bound; each gets a clear error (exit 1) or, for a partition directory that is not a partition, a
//! warning naming it, never a silent wrong answer.

use crate::fixtures::{query, stdout};
use chrono::{TimeZone, Utc};
use logrecord::{Level, LogRecord, Uuid};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A cold-layout store of `rows` records in date=2026-01-01/hour=00/m1.parquet.
fn store(root: &Path, rows: u32) {
    let mut records: Vec<LogRecord> = (0..rows)
        .map(|i| LogRecord {
            status: Some(200),
            ..LogRecord::new(
                u64::from(i),
                Uuid::from_u64_pair(1, u64::from(i)),
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, i % 60).unwrap(),
                Level::Info,
                "imds::request",
                "request served",
                "c1",
                "m1",
            )
        })
        .collect();
    logrecord::parquet_file::write(
        &root.join("date=2026-01-01/hour=00/m1.parquet"),
        &mut records,
    )
    .unwrap();
}

fn failed_with(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[test]
fn a_crafted_footer_is_an_error_naming_the_file_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 10);
    let crafted = dir.path().join("date=2026-01-01/hour=01/x.parquet");
    std::fs::create_dir_all(crafted.parent().unwrap()).unwrap();
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&[0; 64]);
    bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    bytes.extend_from_slice(b"PAR1");
    std::fs::write(&crafted, bytes).unwrap();
    for statement in ["SELECT count(*) FROM logs", "SELECT * FROM logs"] {
        failed_with(
            &query(dir.path(), &[statement]),
            "date=2026-01-01/hour=01/x.parquet: not a valid Parquet file: its footer gives 4294967280 bytes of metadata in a 76-byte file",
        );
    }
    // Pruned away, it is not read: the other hour still answers.
    let csv = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM logs WHERE hour = '00'",
        ],
    ));
    assert_eq!(csv, "n\n10\n");
}

#[test]
fn an_empty_parquet_file_is_an_error_and_a_bad_partition_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 10);
    let empty = dir.path().join("date=2026-01-01/hour=00/m2.parquet");
    std::fs::write(&empty, b"").unwrap();
    failed_with(
        &query(dir.path(), &["SELECT count(*) FROM logs"]),
        "date=2026-01-01/hour=00/m2.parquet: empty file (0 bytes), not a Parquet file",
    );
    std::fs::remove_file(&empty).unwrap();

    // A copy of the data under a directory that is no partition: skipped, named, not counted.
    let bad = dir.path().join("date=notadate/hour=00");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        dir.path().join("date=2026-01-01/hour=00/m1.parquet"),
        bad.join("m1.parquet"),
    )
    .unwrap();
    let output = query(
        dir.path(),
        &["--format", "csv", "SELECT count(*) AS n FROM logs"],
    );
    assert_eq!(stdout(&output), "n\n10\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("date=notadate").count(),
        1,
        "one warning naming it: {stderr}"
    );
    assert!(stderr.contains("warning: skipping"), "{stderr}");
}

#[test]
fn deep_and_huge_statements_are_refused_before_planning() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 1);
    let chain = format!("SELECT {}", vec!["1"; 10_000].join("+"));
    let started = Instant::now();
    failed_with(
        &query(dir.path(), &[&chain]),
        "refused: the statement has 9999 operators; the limit is 1000",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    failed_with(
        &query(dir.path(), &[&nested]),
        "parentheses are nested 5000 deep",
    );
    // Plans too large to plan in bounded time: many union branches, many relations.
    let unions = vec!["SELECT 1"; 5_000].join(" UNION ALL ");
    let started = Instant::now();
    failed_with(
        &query(dir.path(), &[&unions]),
        "refused: the statement has 5000 SELECTs (union branches and subqueries); the limit is 256",
    );
    let subqueries: Vec<String> = (0..500).map(|i| format!("(SELECT 1) t{i}")).collect();
    failed_with(
        &query(
            dir.path(),
            &[&format!("SELECT count(*) FROM {}", subqueries.join(", "))],
        ),
        "refused: the statement has 501 SELECTs",
    );
    let tables: Vec<String> = (0..100).map(|i| format!("logs t{i}")).collect();
    failed_with(
        &query(
            dir.path(),
            &[&format!("SELECT count(*) FROM {}", tables.join(", "))],
        ),
        "refused: the statement reads 100 relations (tables, subqueries, joins); the limit is 64",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // At the limit it runs.
    let at_limit = format!("SELECT {} AS n", vec!["1"; 200].join("+"));
    assert_eq!(
        stdout(&query(dir.path(), &["--format", "csv", &at_limit])),
        "n\n200\n"
    );
}

#[test]
fn results_stream_and_memory_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 10);
    // Three billion rows, read until the reader has enough: streamed, not collected.
    let mut child = Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--data")
        .arg(dir.path())
        .args([
            "--format",
            "csv",
            "SELECT value FROM generate_series(1, 3000000000)",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; 4096];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("value\n1\n2\n3\n"));
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap())
        .unwrap();
    assert!(rss_kib < 1024 * 1024, "{rss_kib} KiB resident");
    // The reader goes away: query stops quietly, with success.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");

    // A table needs every row: past its cap, a clear error instead of all of memory.
    failed_with(
        &query(
            dir.path(),
            &["SELECT * FROM generate_series(1, 300000) a, generate_series(1, 300000) b"],
        ),
        "more than 100000 rows, too many for a table",
    );

    // Under a memory limit a sort spills and answers; a build side over it is a clear error.
    let sorted = query(
        dir.path(),
        &[
            "--memory-limit",
            "2M",
            "--format",
            "csv",
            "SELECT value FROM generate_series(1, 500000) ORDER BY value DESC LIMIT 2",
        ],
    );
    assert_eq!(stdout(&sorted), "value\n500000\n499999\n");
    failed_with(
        &query(
            dir.path(),
            &[
                "--memory-limit",
                "1M",
                "--format",
                "csv",
                "SELECT a.value, count(*) FROM generate_series(1, 300000) a JOIN generate_series(1, 300000) b ON a.value = b.value GROUP BY a.value",
            ],
        ),
        "Resources exhausted",
    );
    // A join of logs with logs that no memory limit can bound (nested loops that cannot spill,
    // output not all accounted): refused before it runs. With an equality, or one side
    // limited, it runs.
    let ten_way: Vec<String> = (0..10).map(|i| format!("logs t{i}")).collect();
    for cross in [
        format!("SELECT count(*) FROM {}", ten_way.join(", ")),
        "SELECT count(*) FROM logs a JOIN logs b ON a.seq < b.seq".to_owned(),
    ] {
        failed_with(
            &query(dir.path(), &["--memory-limit", "1G", &cross]),
            "refused: a join of logs with logs without an equality condition",
        );
    }
    assert_eq!(
        stdout(&query(
            dir.path(),
            &[
                "--format",
                "csv",
                "SELECT count(*) AS n FROM logs a, logs b WHERE a.machine = b.machine",
            ],
        )),
        "n\n100\n"
    );
    let bad_limit = query(dir.path(), &["--memory-limit", "lots", "SELECT 1"]);
    assert_eq!(bad_limit.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_limit.stderr).contains("not a size such as 512M or 2G"));
}

#[test]
fn a_file_with_foreign_column_types_is_refused_naming_it_and_the_column() {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 10);
    // The right names, the wrong types: an int64 `timestamp` and a text `seq`.
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Int64, false),
        Field::new("seq", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1_767_225_600_000_000])),
            Arc::new(StringArray::from(vec!["7"])),
        ],
    )
    .unwrap();
    let foreign = dir.path().join("date=2026-01-01/hour=00/foreign.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&foreign).unwrap(),
        schema,
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    failed_with(
        &query(dir.path(), &["SELECT count(*), max(seq) FROM logs"]),
        "foreign.parquet: not a valid Parquet file: column timestamp is Int64 where a log record has Timestamp(µs, \"UTC\")",
    );
}

#[test]
fn symbolic_links_in_a_store_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 10);
    // A partition directory linked to another, and a file linked to another: each would be
    // listed, and its rows counted, twice.
    std::os::unix::fs::symlink(
        dir.path().join("date=2026-01-01"),
        dir.path().join("date=2026-01-02"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("date=2026-01-01/hour=00/m1.parquet"),
        dir.path().join("date=2026-01-01/hour=00/again.parquet"),
    )
    .unwrap();
    let output = query(
        dir.path(),
        &["--format", "csv", "SELECT count(*) AS n FROM logs"],
    );
    assert_eq!(stdout(&output), "n\n10\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for link in ["date=2026-01-02", "date=2026-01-01/hour=00/again.parquet"] {
        assert!(
            stderr.contains(&format!(
                "{link}: a symbolic link (not followed), its files are not read"
            )),
            "{stderr}"
        );
    }
}
