//! `collector compact` and `collector retain` on a warm-store Delta table written as the
//! collector writes it: closed hours are rewritten into one file per directory, field for field
//! and sorted by time; recent hours and single files are left alone; files no commit names (a
//! killed flush's) are never read; readers running throughout, while a writer keeps appending,
//! never see a row twice or miss one; a compactor or a retention run killed mid-way leaves the
//! table exact and the next run finishes the job.

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use deltalake::kernel::Transaction;
use logrecord::{Level, LogRecord, Uuid};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A distinct id per (machine, seq).
fn id_of(machine: &str, seq: u64) -> Uuid {
    let machine = machine
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    Uuid::from_u64_pair(machine, seq)
}

fn record(cluster: &str, machine: &str, seq: u64, at: DateTime<Utc>) -> LogRecord {
    LogRecord {
        request_id: Some(Uuid::from_u64_pair(seq, 0)),
        method: Some("GET".into()),
        path: Some("/metadata/instance".into()),
        api_version: Some("2021-02-01".into()),
        format: Some("json".into()),
        status: Some(200),
        latency_us: Some(100 + seq % 900),
        response_bytes: Some(1234),
        caller: Some("10.0.0.4".into()),
        ..LogRecord::new(
            seq,
            id_of(machine, seq),
            at,
            Level::Info,
            "imds::request",
            "request served",
            cluster,
            machine,
        )
    }
}

fn url(store: &Path) -> url::Url {
    warm_table::location(store.to_str().unwrap()).unwrap()
}

/// Commits one collector flush of `rows` records of machine `<cluster>-<partition>` with
/// `seq` from `first + 1`, into the hour starting at `hour`, interleaved in time with the other
/// partitions' (so the sort has real work to do); returns its records.
fn flush(
    store: &Path,
    hour: DateTime<Utc>,
    cluster: &str,
    partition: i32,
    first: i64,
    rows: i64,
) -> Vec<LogRecord> {
    let machine = format!("{cluster}-{partition}");
    let mut records: Vec<LogRecord> = (0..rows)
        .map(|i| {
            let offset = first + i;
            let at = hour + Duration::milliseconds(offset * 7 % 3_600_000);
            record(cluster, &machine, offset as u64 + 1, at)
        })
        .collect();
    let files = warm_table::partition_files(&mut records).unwrap();
    assert_eq!(files.len(), 1, "one hour of one cluster");
    let url = url(store);
    let transactions = vec![Transaction::new(
        warm_table::partition_app_id("test", "t", partition),
        first + rows - 1,
    )];
    testkit::run(async move {
        let mut table = warm_table::open_or_create(&url).await.unwrap();
        warm_table::append(&mut table, files, transactions, &[], async {})
            .await
            .unwrap();
    });
    records
}

fn run(store: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(args)
        .arg("--out")
        .arg(store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "collector {args:?} failed: {stderr}"
    );
    stderr
}

/// Every row of the table's current version, by id (what any reader sees).
fn visible_rows(store: &Path) -> BTreeMap<Uuid, LogRecord> {
    let url = url(store);
    let records = testkit::run(async move { warm_table::read_records(&url).await.unwrap() });
    let mut rows = BTreeMap::new();
    for record in records {
        let id = record.id;
        assert!(rows.insert(id, record).is_none(), "row {id} seen twice");
    }
    rows
}

/// The table's data files under `dir` (relative to the store).
fn table_files(store: &Path, dir: &str) -> Vec<String> {
    let url = url(store);
    testkit::run(async move { warm_table::data_files(&url).await.unwrap() })
        .into_iter()
        .filter(|f| f.starts_with(dir))
        .collect()
}

/// The `timestamp` column of a data file, in file order.
fn timestamps(path: &Path) -> Vec<i64> {
    use arrow::array::{Array, TimestampMicrosecondArray};
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let index = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == "timestamp")
        .unwrap();
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut values = Vec::new();
    for batch in builder.with_projection(mask).build().unwrap() {
        let batch = batch.unwrap();
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        values.extend((0..column.len()).map(|i| column.value(i)));
    }
    values
}

fn by_id(records: impl IntoIterator<Item = LogRecord>) -> BTreeMap<Uuid, LogRecord> {
    records.into_iter().map(|r| (r.id, r)).collect()
}

#[test]
fn closed_hours_are_rewritten_sorted_and_nothing_else_moves() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let old = Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0).unwrap();
    let mut expected = Vec::new();
    for partition in 0..3 {
        expected.extend(flush(store, old, "east", partition, 0, 400));
        expected.extend(flush(store, old, "east", partition, 400, 250));
    }
    // A cluster with a single file: nothing to merge. The current hour: not closed.
    expected.extend(flush(store, old, "west", 0, 650, 20));
    let current = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    expected.extend(flush(store, current, "east", 0, 650, 30));
    expected.extend(flush(store, current, "east", 1, 650, 30));
    // A file a killed flush left (written, never committed): not data, never merged.
    let east = "date=2024-02-29/hour=23/cluster=east";
    let stray = store.join(east).join("part-killed-flush.parquet");
    logrecord::parquet_file::write(
        &stray,
        &mut [record("east", "stray", 1, old + Duration::minutes(1))],
    )
    .unwrap();
    let expected = by_id(expected);
    assert_eq!(visible_rows(store), expected);
    let west_before = table_files(store, "date=2024-02-29/hour=23/cluster=west");
    let current_dir = current
        .format("date=%Y-%m-%d/hour=%H/cluster=east")
        .to_string();
    let current_before = table_files(store, &current_dir);
    assert_eq!(table_files(store, east).len(), 6);

    let summary = run(store, &["compact"]);
    assert!(
        summary.contains("1 hours compacted (6 files rewritten into 1)"),
        "{summary}"
    );
    // Field for field, every row exactly once; the stray file is still not data.
    assert_eq!(visible_rows(store), expected);
    let merged = table_files(store, east);
    assert_eq!(merged.len(), 1, "{merged:?}");
    let rows = timestamps(&store.join(&merged[0]));
    assert_eq!(rows.len(), 1950);
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
    assert_eq!(
        table_files(store, "date=2024-02-29/hour=23/cluster=west"),
        west_before
    );
    assert_eq!(table_files(store, &current_dir), current_before);
    let summary = run(store, &["compact"]);
    assert!(summary.contains("0 hours compacted"), "{summary}");

    // Retention keeping everything: the replaced files and the stray one are vacuumed.
    assert_eq!(testkit::parquet_files(&store.join(east)), 8);
    let summary = run(
        store,
        &["retain", "--max-age", "36500d", "--vacuum-after", "0s"],
    );
    assert!(
        summary.contains(
            "0 files of old hours removed from the table and 0 from its rollups, 7 files out of them deleted"
        ),
        "{summary}"
    );
    assert_eq!(testkit::parquet_files(&store.join(east)), 1);
    assert!(!stray.exists());
    assert_eq!(visible_rows(store), expected);

    // `--open-hour`: the hour in progress too.
    let summary = run(store, &["compact", "--open-hour"]);
    assert!(
        summary.contains("1 hours compacted (2 files rewritten into 1)"),
        "{summary}"
    );
    assert_eq!(table_files(store, &current_dir).len(), 1);
    assert_eq!(visible_rows(store), expected);
}

#[test]
fn retention_deletes_whole_old_hours_and_survives_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let mut kept = Vec::new();
    for (age_hours, cluster) in [(100, "east"), (50, "west"), (49, "east"), (1, "east")] {
        let hour = now - Duration::hours(age_hours);
        let rows = flush(store, hour, cluster, 0, age_hours * 1000, 50);
        if age_hours < 50 {
            kept.extend(rows);
        }
    }
    let kept = by_id(kept);
    // Killed at several points, then run to the end: the table is either before or after.
    for delay_ms in [10, 60, 150] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
            .args([
                "retain",
                "--max-age",
                "49h",
                "--vacuum-after",
                "0s",
                "--out",
            ])
            .arg(store)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = visible_rows(store);
        assert!(
            seen.len() == kept.len() || seen.len() == kept.len() + 100,
            "{} rows: neither before nor after",
            seen.len()
        );
    }
    run(
        store,
        &["retain", "--max-age", "49h", "--vacuum-after", "0s"],
    );
    assert_eq!(visible_rows(store), kept);
    for age_hours in [100, 50] {
        let hour = now - Duration::hours(age_hours);
        let dir = store.join(hour.format("date=%Y-%m-%d/hour=%H").to_string());
        let left: usize = ["east", "west"]
            .iter()
            .map(|c| testkit::parquet_files(&dir.join(format!("cluster={c}"))))
            .sum();
        assert_eq!(left, 0, "{}: files left after vacuum", dir.display());
    }
    // Nothing left to remove; every Parquet file on disk is one the table names.
    let summary = run(
        store,
        &["retain", "--max-age", "49h", "--vacuum-after", "0s"],
    );
    assert!(
        summary.contains("0 files of old hours removed from the table"),
        "{summary}"
    );
    assert_eq!(visible_rows(store), kept);
    let mut on_disk: Vec<String> = walk(store)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") && !f.starts_with("_delta_log"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, table_files(store, ""));
}

/// Every file under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    testkit::files_under(dir)
        .iter()
        .map(|path| {
            path.strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn readers_never_see_a_row_twice_or_miss_one_while_compaction_runs_dies_and_writers_append() {
    let dir = tempfile::tempdir().unwrap();
    let store: PathBuf = dir.path().into();
    let start = Utc.with_ymd_and_hms(2025, 12, 31, 20, 0, 0).unwrap();
    let mut expected = Vec::new();
    for hour in 0..4 {
        let at = start + Duration::hours(hour);
        for partition in 0..3 {
            for file in 0..3 {
                let first = hour * 100_000 + file * 2_000;
                expected.extend(flush(&store, at, "east", partition, first, 2_000));
            }
        }
    }
    let before = expected.len();

    // Readers read the whole table over and over, as queries would: a row count between what
    // was there before and what the appender has committed, never a repeat.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let seen = visible_rows(&store);
                    assert!(seen.len() >= before, "a reader missed rows: {}", seen.len());
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // A collector keeps appending late events into the hours being compacted.
    let appender = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut appended = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) && round < 40 {
                let at = start + Duration::hours(round % 4);
                appended.extend(flush(&store, at, "east", 7, 1_000_000 + round * 10, 10));
                round += 1;
            }
            appended
        })
    };

    // A compactor killed mid-run, at several points: the table stays exact.
    for delay_ms in [50, 150, 400] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
            .args(["compact", "--out"])
            .arg(&store)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // Then runs to completion while the appender goes on.
    run(&store, &["compact"]);
    expected.extend(appender.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let reads = reader
            .join()
            .expect("a reader saw duplicates or missing rows");
        assert!(reads > 3, "readers only read {reads} times");
    }
    let expected = by_id(expected);
    assert_eq!(visible_rows(&store), expected);
    // Once nothing appends: each hour ends as one file.
    run(&store, &["compact"]);
    assert_eq!(visible_rows(&store), expected);
    for hour in 0..4 {
        let dir = (start + Duration::hours(hour))
            .format("date=%Y-%m-%d/hour=%H/cluster=east")
            .to_string();
        let files = table_files(&store, &dir);
        assert_eq!(files.len(), 1, "{dir}: {files:?}");
    }
}
