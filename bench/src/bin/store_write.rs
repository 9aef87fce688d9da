//! The warm store's write cost by layout, side by side in one run: the same records, in batches of
//! the collector's size, written (a) as plain hive-partitioned Parquet files (`logrecord`'s writer,
//! each file fsynced and renamed into place: the layout the warm store had before Delta, and the
//! physical baseline), and (b) as Delta commits into a table (the collector's own code: files plus
//! one commit carrying the partition's `txn` per batch).
//!
//! `store_write LINES_FILE BATCH_ROWS WORK_DIR`: prints one JSON line with rows/s of each and the
//! Delta/hive ratio. Records are decoded before timing (both layouts get the same records).

use clap::Parser;
use deltalake::kernel::Transaction;
use logrecord::LogRecord;
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
        let mut batch = batch.to_vec();
        warm_table::sort_into_file_order(&mut batch);
        for directory in warm_table::directories(&batch) {
            let path = work
                .join("hive")
                .join(directory.hour.warm_partition_dir(directory.cluster))
                .join(format!("batch-{i:06}.parquet"));
            logrecord::parquet_file::write(&path, &mut directory.records.to_vec())?;
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
        let files = warm_table::partition_files(&mut batch.to_vec())?;
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
