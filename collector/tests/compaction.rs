//! `collector compact` on a warm store laid out as the collector writes it: closed hours merge
//! into one file per partition directory, field for field and sorted; uncommitted and recent files
//! are left alone; readers running throughout never see a row twice or miss one; a compactor
//! killed mid-run leaves the store exact and the next run finishes the job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use logrecord::compaction::{COMPACTED_PREFIX, MANIFEST, Manifest};
use logrecord::{Level, LogRecord, Uuid};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const TOPIC: &str = "imds.logs";

/// A distinct id per (machine, seq).
fn id_of(machine: &str, seq: u64) -> Uuid {
    let machine = machine
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    Uuid::from_u64_pair(machine, seq)
}

fn record(cluster: &str, machine: &str, seq: u64, at: DateTime<Utc>) -> LogRecord {
    LogRecord {
        seq,
        id: id_of(machine, seq),
        timestamp: at,
        level: Level::Info,
        target: "imds::request".into(),
        message: "request served".into(),
        cluster: cluster.into(),
        machine: machine.into(),
        request_id: Some(Uuid::from_u64_pair(seq, 0)),
        method: Some("GET".into()),
        path: Some("/metadata/instance".into()),
        api_version: Some("2021-02-01".into()),
        format: Some("json".into()),
        status: Some(200),
        latency_us: Some(100 + seq % 900),
        response_bytes: Some(1234),
        caller: Some("10.0.0.4".into()),
        fields: None,
    }
}

/// Writes one collector file of `rows` records for Kafka partition `partition`, offsets from
/// `first`, into the hour starting at `hour`; returns its records.
fn collector_file(
    store: &Path,
    hour: DateTime<Utc>,
    cluster: &str,
    partition: i32,
    first: i64,
    rows: i64,
) -> Vec<LogRecord> {
    let dir = store
        .join(hour.format("date=%Y-%m-%d/hour=%H").to_string())
        .join(format!("cluster={cluster}"));
    let machine = format!("{cluster}-{partition}");
    let mut records: Vec<LogRecord> = (0..rows)
        .map(|i| {
            let offset = first + i;
            // Interleaved in time across partitions, so the merge has real work to do.
            let at = hour + Duration::milliseconds(offset * 7 % 3_600_000);
            record(cluster, &machine, offset as u64 + 1, at)
        })
        .collect();
    let name = format!(
        "{TOPIC}-{partition}-{first:020}-{:020}.parquet",
        first + rows - 1
    );
    logrecord::parquet_file::write(&dir.join(name), &mut records.clone()).unwrap();
    records.sort_by_key(|r| r.id);
    records
}

/// Stores the collector's committed state for a partition: offsets below `next` are committed.
fn commit(store: &Path, partition: i32, next: i64) {
    let dir = store.join("_collector").join(TOPIC);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{partition}.json")),
        format!(r#"{{"next_offset":{next},"high_water":{{}}}}"#),
    )
    .unwrap();
}

fn compact(store: &Path, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["compact", "--out"])
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "collector compact failed: {stderr}"
    );
    stderr
}

/// Every visible row of the store, by id (what any reader sees).
fn visible_rows(store: &Path) -> BTreeMap<Uuid, LogRecord> {
    let mut rows = BTreeMap::new();
    for file in logrecord::parquet_file::list(store) {
        for record in logrecord::parquet_file::read(&file).unwrap() {
            let id = record.id;
            assert!(rows.insert(id, record).is_none(), "row {id} seen twice");
        }
    }
    rows
}

fn data_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn by_id(records: impl IntoIterator<Item = LogRecord>) -> BTreeMap<Uuid, LogRecord> {
    records.into_iter().map(|r| (r.id, r)).collect()
}

#[test]
fn closed_hours_merge_into_one_sorted_file_and_nothing_else_moves() {
    let store = tempfile::tempdir().unwrap();
    let store = store.path();
    let old = Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0).unwrap();
    let mut expected = Vec::new();
    for partition in 0..3 {
        expected.extend(collector_file(store, old, "east", partition, 0, 400));
        expected.extend(collector_file(store, old, "east", partition, 400, 250));
        commit(store, partition, 650);
    }
    // Partition 3's second file is not committed yet (a half-published batch): never merged.
    expected.extend(collector_file(store, old, "east", 3, 0, 10));
    expected.extend(collector_file(store, old, "east", 3, 10, 5));
    commit(store, 3, 10);
    // A cluster with a single file: nothing to merge. The current hour: not closed.
    expected.extend(collector_file(store, old, "west", 0, 650, 20));
    let current = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    expected.extend(collector_file(store, current, "east", 0, 650, 30));
    expected.extend(collector_file(store, current, "east", 1, 650, 30));
    commit(store, 0, 680);
    commit(store, 1, 680);
    let expected = by_id(expected);
    assert_eq!(visible_rows(store), expected);

    let summary = compact(store, &["--grace", "10m"]);
    assert!(
        summary.contains(
            "1 directories compacted (7 files, 1960 rows merged), 0 replaced files deleted"
        ),
        "{summary}"
    );
    // Field for field, every row exactly once.
    assert_eq!(visible_rows(store), expected);

    let east = store.join("date=2024-02-29/hour=23/cluster=east");
    let manifest = Manifest::load(&east).unwrap().unwrap();
    assert_eq!(manifest.rows, 1960);
    let mut replaced: Vec<_> = manifest.replaces.iter().map(|r| r.name.clone()).collect();
    replaced.sort();
    assert_eq!(replaced.len(), 7);
    assert!(
        !replaced
            .iter()
            .any(|n| n.contains("-3-00000000000000000010-"))
    );
    // Visible now: the merged file and the uncommitted one; the replaced stay for the grace.
    let visible: Vec<String> = logrecord::parquet_file::list(&east)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        visible,
        [
            manifest.file.clone(),
            format!("{TOPIC}-3-00000000000000000010-00000000000000000014.parquet")
        ]
    );
    assert_eq!(data_files(&east).len(), 9);
    // The merged file is sorted by time.
    let merged = logrecord::parquet_file::read(&east.join(&manifest.file)).unwrap();
    assert!(merged.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    // Untouched: west (one file), the current hour.
    assert_eq!(
        data_files(&store.join("date=2024-02-29/hour=23/cluster=west")).len(),
        1
    );
    let current_dir = store
        .join(current.format("date=%Y-%m-%d/hour=%H").to_string())
        .join("cluster=east");
    assert_eq!(data_files(&current_dir).len(), 2);
    assert!(!current_dir.join(MANIFEST).exists());

    // Once partition 3 is committed and the grace has passed: merged again, the replaced gone.
    commit(store, 3, 15);
    let summary = compact(store, &["--grace", "0s"]);
    assert!(
        summary.contains(
            "1 directories compacted (2 files, 1965 rows merged), 7 replaced files deleted"
        ),
        "{summary}"
    );
    assert_eq!(visible_rows(store), expected);
    let summary = compact(store, &["--grace", "0s"]);
    assert!(summary.contains("0 directories compacted"), "{summary}");
    assert!(summary.contains("2 replaced files deleted"), "{summary}");
    let left = data_files(&east);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(COMPACTED_PREFIX));
    assert_eq!(visible_rows(store), expected);
}

#[test]
fn readers_never_see_a_row_twice_or_miss_one_while_compaction_runs_or_dies() {
    let store = tempfile::tempdir().unwrap();
    let store: PathBuf = store.path().into();
    let start = Utc.with_ymd_and_hms(2025, 12, 31, 20, 0, 0).unwrap();
    let mut expected = Vec::new();
    for hour in 0..6 {
        let at = start + Duration::hours(hour);
        for partition in 0..4 {
            for file in 0..4 {
                let first = hour * 100_000 + file * 2_000;
                expected.extend(collector_file(&store, at, "east", partition, first, 2_000));
            }
        }
    }
    for partition in 0..4 {
        commit(&store, partition, 10_000_000);
    }
    let expected = by_id(expected);
    let expected_ids: Vec<&Uuid> = expected.keys().collect();

    // Readers list and read the whole store over and over, as queries would.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            let expected_len = expected.len();
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let seen = visible_rows(&store);
                    assert_eq!(
                        seen.len(),
                        expected_len,
                        "a reader saw a different row count"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    // A compactor killed mid-run, at several points: the store stays exact.
    for delay_ms in [20, 80, 200] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
            .args(["compact", "--grace", "2s", "--out"])
            .arg(&store)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            visible_rows(&store).keys().collect::<Vec<_>>(),
            expected_ids
        );
    }
    // Then runs to completion, and after the grace period, the deletion of the replaced files.
    compact(&store, &["--grace", "2s"]);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    compact(&store, &["--grace", "2s"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let reads = reader
            .join()
            .expect("a reader saw duplicates or missing rows");
        assert!(reads > 3, "readers only read {reads} times");
    }
    assert_eq!(visible_rows(&store), expected);
    for hour in 0..6 {
        let dir = store
            .join(
                (start + Duration::hours(hour))
                    .format("date=%Y-%m-%d/hour=%H")
                    .to_string(),
            )
            .join("cluster=east");
        let files = data_files(&dir);
        assert_eq!(files.len(), 1, "{}: {files:?}", dir.display());
        assert!(files[0].starts_with(COMPACTED_PREFIX));
    }
}
