//! The warm store's write cost by layout, side by side in one run: the same records, in batches of
//! the collector's size, written (a) as plain hive-partitioned Parquet files (`logrecord`'s writer,
//! each file fsynced and renamed into place: the layout the warm store had before Delta, and the
//! physical baseline), and (b) as Delta commits into a table (the collector's own code: files plus
//! one commit carrying the partition's `txn` per batch).
//!
//! `store_write LINES_FILE BATCH_ROWS WORK_DIR`: prints one JSON line with rows/s of each and the
//! Delta/hive ratio. Records are decoded before timing (both layouts get the same records).

use clap::Parser;
use collector::warm_table::{self, PartitionFile};
use deltalake::kernel::Transaction;
use logrecord::LogRecord;
use logrecord::layout::Hour;
use std::path::PathBuf;
use std::time::Instant;

/// Writes the same records as hive Parquet and as Delta commits; prints rows/s of each.
#[derive(Debug, Parser)]
#[command(name = "store_write")]
struct Args {
    /// JSON lines of log records.
    lines: PathBuf,
    /// Records per batch (the collector's flush size).
    #[arg(value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch_rows: usize,
    /// Directory the two stores are written under.
    work: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (batch_rows, work) = (args.batch_rows, args.work.as_path());
    let text = std::fs::read_to_string(&args.lines)?;
    let records: Vec<LogRecord> = text
        .lines()
        .map(LogRecord::from_json_line)
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    for (i, batch) in records.chunks(batch_rows).enumerate() {
        for (key, mut group) in groups(batch) {
            let path = work
                .join("hive")
                .join(format!("date={}/hour={}/cluster={}", key.0, key.1, key.2))
                .join(format!("batch-{i:06}.parquet"));
            logrecord::parquet_file::write(&path, &mut group)?;
        }
    }
    let hive_s = started.elapsed().as_secs_f64();

    warm_table::register_storage();
    let url = warm_table::location(work.join("delta").to_str().unwrap_or("delta"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut table = runtime.block_on(warm_table::open_or_create(&url))?;
    let started = Instant::now();
    let mut offset = 0i64;
    for batch in records.chunks(batch_rows) {
        let files: Vec<PartitionFile> = groups(batch)
            .into_iter()
            .map(|(key, group)| {
                Ok(PartitionFile {
                    date: key.0,
                    hour: key.1,
                    cluster: key.2,
                    batch: warm_table::to_file_batch(&group)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        offset += batch.len() as i64;
        let transactions = vec![Transaction::new("bench-store_write-0", offset - 1)];
        runtime
            .block_on(warm_table::append(
                &mut table,
                files,
                transactions,
                &[],
                async {},
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let delta_s = started.elapsed().as_secs_f64();
    let rows = records.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "rows": records.len(),
            "batch_rows": batch_rows,
            "hive_rows_per_s": (rows / hive_s).round(),
            "delta_rows_per_s": (rows / delta_s).round(),
            "delta_vs_hive": ((hive_s / delta_s) * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

type Key = (String, String, String);

/// A batch's records by `date=/hour=/cluster=` directory, each group sorted by time, as the
/// collector writes them.
fn groups(batch: &[LogRecord]) -> Vec<(Key, Vec<LogRecord>)> {
    let mut groups: std::collections::BTreeMap<Key, Vec<LogRecord>> = Default::default();
    for record in batch {
        groups
            .entry((
                Hour::of(record.timestamp).date(),
                Hour::of(record.timestamp).hour(),
                record.cluster.clone(),
            ))
            .or_default()
            .push(record.clone());
    }
    groups
        .into_iter()
        .map(|(key, mut group)| {
            group.sort_by_key(|r| r.timestamp);
            (key, group)
        })
        .collect()
}
