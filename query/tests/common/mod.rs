//! Helpers shared by `query`'s integration tests.
#![allow(dead_code, clippy::unwrap_used)]

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

/// The standard output of a `query` run that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Runs `future` to its end on a runtime of its own.
fn block_on<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
    .join()
    .unwrap()
}

/// Writes `records` into a Delta table at `root` as the collector does, one commit per
/// `commits` share of each `date=/hour=/cluster=` directory's rows (so each holds that many files).
pub fn write_delta(root: &Path, records: &[logrecord::LogRecord], commits: usize) {
    use collector::warm_table::{self, PartitionFile};
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String, String), Vec<logrecord::LogRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((
                r.timestamp.format("%Y-%m-%d").to_string(),
                r.timestamp.format("%H").to_string(),
                r.cluster.clone(),
            ))
            .or_default()
            .push(r.clone());
    }
    let url = warm_table::location(root.to_str().unwrap()).unwrap();
    for commit in 0..commits {
        let mut files = Vec::new();
        for ((date, hour, cluster), rows) in &groups {
            let mut share: Vec<_> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| i % commits == commit)
                .map(|(_, r)| r.clone())
                .collect();
            if share.is_empty() {
                continue;
            }
            share.sort_by_key(|r| r.timestamp);
            files.push(PartitionFile {
                date: date.clone(),
                hour: hour.clone(),
                cluster: cluster.clone(),
                batch: warm_table::to_file_batch(&share).unwrap(),
            });
        }
        let url = url.clone();
        block_on(async move {
            let mut table = warm_table::open_or_create(&url).await.unwrap();
            warm_table::append(&mut table, files, Vec::new(), &[], async {})
                .await
                .unwrap();
        });
    }
}

/// Compacts every closed hour of the Delta table at `root`, then vacuums every file no longer in it.
pub fn compact_and_vacuum(root: &Path) {
    let out = root.to_str().unwrap().to_owned();
    block_on(async move {
        let now = chrono::Utc::now();
        collector::compact::run(&collector::compact::CompactOptions {
            out: out.clone(),
            min_age: std::time::Duration::from_secs(3600),
            target_file_size: 128 << 20,
            now,
        })
        .await
        .unwrap();
        collector::retain::run(&collector::retain::RetainOptions {
            out,
            max_age: std::time::Duration::from_secs(100 * 365 * 86400),
            vacuum_after: std::time::Duration::ZERO,
            now,
        })
        .await
        .unwrap();
    });
}

/// Parquet files on disk in a directory.
pub fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            name.ends_with(".parquet") && !name.starts_with('.')
        })
        .count()
}
