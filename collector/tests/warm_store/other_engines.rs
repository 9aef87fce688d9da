//! Other engines read the warm store's Delta table exactly: Apache Spark with Delta Lake (Delta's
//! reference implementation) and the Python `deltalake` package, installed by
//! scripts/install-test-deps, read a table the collector filled from real agents through Kafka,
//! over and over while `collector compact`'s code (its clock moved past the agents' hour) rewrites
//! it, and every read holds exactly the events
//! the agents logged at INFO and above: same count, every id once. They start from a checkpoint
//! with typed statistics, as the collector writes them.

use crate::store::{TwoClusters, assert_exactly_once, store_records, wait_for_rows};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn spark_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/spark");
    assert!(
        dir.join("bin/python").exists() && dir.join("jars").exists(),
        "{} is missing: run scripts/install-test-deps (it installs pyspark, deltalake and Delta's jars)",
        dir.display()
    );
    dir
}

/// Starts the reader; returns its stdout lines as they come.
fn start_reader(
    engine: &str,
    table: &Path,
    seconds: u32,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let spark = spark_dir();
    let mut child = Command::new(spark.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engines/read_table.py"))
        .args([engine, table.to_str().unwrap(), &seconds.to_string()])
        .env("DELTA_JARS", spark.join("jars"))
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = tx.send(value);
            }
        }
    });
    (child, rx)
}

/// Reads with `engine` while `during` runs; every read must be exactly `expected` ids.
fn read_exactly(engine: &str, table: &Path, expected: &[String], during: impl FnOnce()) {
    let (mut child, lines) = start_reader(engine, table, 15);
    let mut during = Some(during);
    let mut reads = 0;
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("{engine} reader said nothing for 180 s"));
        if line["ready"] == true {
            if let Some(during) = during.take() {
                during();
            }
        } else if let Some(rows) = line["rows"].as_u64() {
            reads += 1;
            assert_eq!(
                (rows, line["distinct"].as_u64().unwrap()),
                (expected.len() as u64, expected.len() as u64),
                "{engine} read {reads}: rows and distinct ids"
            );
        } else if let Some(ids) = line["ids"].as_array() {
            let ids: Vec<String> = ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            assert_eq!(ids, expected, "{engine}: the ids of the agents' events");
            break;
        }
    }
    assert!(child.wait().unwrap().success(), "{engine} reader failed");
    assert!(reads >= 2, "{engine} read only {reads} times");
}

#[tokio::test]
async fn spark_and_python_deltalake_read_exactly_the_agents_events_while_compaction_commits() {
    let mut pipeline = TwoClusters::start("engines", 2).await;
    // Several flushes, so each directory holds several files.
    for _ in 0..4 {
        let before = store_records(pipeline.out.path()).len();
        pipeline.west.load(40).await;
        pipeline.east.load(40).await;
        wait_for_rows(pipeline.out.path(), before + 80, Duration::from_secs(60));
    }
    let events = pipeline.stop_agents().await;
    let out = &pipeline.out;
    let stored = wait_for_rows(out.path(), events.len(), Duration::from_secs(60));
    assert!(pipeline.collector.terminate().success());
    assert_exactly_once(&stored, &events);
    // A checkpoint, as the collector writes one every `CHECKPOINT_INTERVAL` commits, with typed
    // statistics (`stats_parsed`): the engines start from it, then replay compaction's commit.
    let url = warm_table::location(out.path().to_str().unwrap()).unwrap();
    testkit::run(async move { warm_table::checkpoint(&url).await }).unwrap();
    let files_before = crate::store::store_files(out.path()).len();
    assert!(files_before > 4, "{files_before} files: nothing to compact");

    let mut expected: Vec<String> = events
        .iter()
        .map(|e| e.id.to_string().replace('-', ""))
        .collect();
    expected.sort();
    // `collector compact`'s code, with its clock two hours ahead so the agents' hour is closed.
    let compact = || {
        let out = out.path().to_str().unwrap().to_owned();
        let report = testkit::run(async move {
            warm_table::compact::run(&warm_table::compact::CompactOptions {
                out,
                min_age: Duration::from_secs(3600),
                open_hour: false,
                target_file_size: 128 << 20,
                rollup_top_values: warm_table::rollup::DEFAULT_TOP_VALUES,
                now: chrono::Utc::now() + chrono::Duration::hours(2),
            })
            .await
        })
        .unwrap();
        assert!(report.hours_compacted >= 1, "{report:?}");
    };
    read_exactly("spark", out.path(), &expected, compact);
    let files_after = crate::store::store_files(out.path()).len();
    // One file per cluster and hour once compacted (the agents' events may straddle an hour).
    assert!(
        files_after < files_before,
        "{files_before} files before, {files_after} after"
    );
    assert!(files_after <= 4, "{files_after} files after compaction");
    read_exactly("deltalake", out.path(), &expected, || {});
}
