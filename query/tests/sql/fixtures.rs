//! What `query`'s tests run it on and how they run it: stores written as the collector and the
//! agent write them, and the binary run to its end.

use chrono::{DateTime, TimeZone, Utc};
use logrecord::{Level, LogRecord, Uuid};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `query --data <root> <args>` to its end.
pub fn query(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--data")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `query --data <root> --format csv` with `input` (statements separated by `;`) on its
/// standard input, to its end.
pub fn query_piped(root: &Path, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--data")
        .arg(root)
        .args(["--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The standard output of a `query` run that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Writes `records` into a Delta table at `root` as the collector does, one commit per
/// `commits` share of each `date=/hour=/cluster=` directory's rows (so each holds that many files).
pub fn write_delta(root: &Path, records: &[logrecord::LogRecord], commits: usize) {
    let mut sorted = records.to_vec();
    sorted.sort_unstable_by(warm_table::file_order);
    // Consecutive rows go to different commits, so each directory with at least `commits` rows
    // gets that many files.
    let url = warm_table::location(root.to_str().unwrap()).unwrap();
    for commit in 0..commits {
        let mut share: Vec<_> = sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % commits == commit)
            .map(|(_, r)| r.clone())
            .collect();
        if share.is_empty() {
            continue;
        }
        let url = url.clone();
        testkit::run(async move { warm_table::write_records(&url, &mut share).await.unwrap() });
    }
}

/// Writes a checkpoint of the Delta table at `root`, as the collector does every
/// `CHECKPOINT_INTERVAL` commits, and returns the fields of its `add` column.
pub fn checkpoint(root: &Path) -> Vec<String> {
    let url = warm_table::location(root.to_str().unwrap()).unwrap();
    let version = testkit::run(async move { warm_table::checkpoint(&url).await }).unwrap();
    let path = root.join(format!("_delta_log/{version:020}.checkpoint.parquet"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .clone();
    match schema.field_with_name("add").unwrap().data_type() {
        datafusion::arrow::datatypes::DataType::Struct(fields) => {
            fields.iter().map(|f| f.name().clone()).collect()
        }
        other => panic!("the checkpoint's add column is {other:?}"),
    }
}

/// Compacts every closed hour of the Delta table at `root`, then vacuums every file no longer in it.
pub fn compact_and_vacuum(root: &Path) {
    let out = root.to_str().unwrap().to_owned();
    testkit::run(async move {
        let now = chrono::Utc::now();
        warm_table::compact::run(&warm_table::compact::CompactOptions {
            out: out.clone(),
            min_age: std::time::Duration::from_secs(3600),
            open_hour: false,
            target_file_size: 128 << 20,
            rollup_top_values: warm_table::rollup::DEFAULT_TOP_VALUES,
            now,
        })
        .await
        .unwrap();
        warm_table::retain::run(&warm_table::retain::RetainOptions {
            out,
            max_age: std::time::Duration::from_secs(100 * 365 * 86400),
            vacuum_after: std::time::Duration::ZERO,
            now,
        })
        .await
        .unwrap();
    });
}

/// 2 days x 3 hours x machines m1, m2 (cluster c1) and m3 (c2) x 10 events.
pub fn records() -> Vec<LogRecord> {
    let mut records = Vec::new();
    for day in 1..=2u32 {
        for hour in 0..3u32 {
            for (cluster, machine) in [("c1", "m1"), ("c1", "m2"), ("c2", "m3")] {
                for i in 0..10u32 {
                    let ts: DateTime<Utc> =
                        Utc.with_ymd_and_hms(2026, 1, day, hour, i * 5, 0).unwrap();
                    let status = [200u16, 200, 200, 404, 500][(i % 5) as usize];
                    records.push(LogRecord {
                        request_id: Some(Uuid::from_u64_pair(0x4000, u64::from(i))),
                        method: Some("GET".into()),
                        path: Some("/metadata/instance".into()),
                        api_version: Some("2021-02-01".into()),
                        format: Some("json".into()),
                        status: Some(status),
                        latency_us: Some(u64::from(50 + i)),
                        response_bytes: Some(100),
                        caller: Some("10.0.0.4".into()),
                        ..LogRecord::new(
                            u64::from(day * 1000 + hour * 100 + i),
                            Uuid::from_u64_pair(
                                u64::from(machine.as_bytes()[1]),
                                u64::from(day * 1000 + hour * 100 + i),
                            ),
                            ts,
                            if status == 500 {
                                Level::Error
                            } else if i == 1 {
                                Level::Warn
                            } else {
                                Level::Info
                            },
                            "imds::request",
                            format!("request {i} served"),
                            cluster,
                            machine,
                        )
                    });
                }
            }
        }
    }
    records
}
