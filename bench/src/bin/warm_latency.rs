//! Emit-to-queryable delay of the warm path: polls the warm store's Delta table every 50 ms and,
//! for every row of every data file the moment a commit makes it part of the table, takes
//! (now - the row's timestamp). Figures are up to 50 ms pessimistic.
//!
//! `warm_latency DIR|s3://BUCKET/PREFIX SECONDS`: watches for SECONDS, then prints one JSON line
//! with p50, p99, max (milliseconds) and the number of rows seen.

use arrow::array::{Array, TimestampMicrosecondArray};
use clap::Parser;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Watches the warm store's Delta table and measures emit-to-queryable delay per row.
#[derive(Debug, Parser)]
#[command(name = "warm_latency")]
struct Args {
    /// The table: a directory or s3://BUCKET/PREFIX.
    store: String,
    /// How long to watch, seconds.
    seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let Args { store, seconds } = Args::parse();
    warm_table::register_storage();
    let url = warm_table::location(&store)?;
    let runtime = tokio::runtime::Runtime::new()?;
    // One table, brought up to date with the new commits only: reloading the whole log every
    // 50 ms made the watcher itself the slowest part of a run on S3. Not loaded yet: the
    // collectors may not have created it.
    let mut table = deltalake::DeltaTableBuilder::from_url(url)?.build()?;
    let mut seen: HashSet<String> = runtime
        .block_on(current_files(&mut table))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut delays_ms: Vec<f64> = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        for file in runtime
            .block_on(current_files(&mut table))
            .unwrap_or_default()
        {
            if seen.insert(file.clone()) {
                let now = chrono::Utc::now().timestamp_micros();
                let bytes = runtime.block_on(warm_table::read_file(&table, &file))?;
                for micros in timestamps(bytes)? {
                    delays_ms.push((now - micros) as f64 / 1000.0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    delays_ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        delays_ms
            .get(((delays_ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({"rows": delays_ms.len(), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": delays_ms.last()})
    );
    Ok(())
}

/// The table's data files after reading the commits made since the last call.
async fn current_files(table: &mut deltalake::DeltaTable) -> anyhow::Result<Vec<String>> {
    table.update_incremental(None).await?;
    warm_table::loaded_data_files(table).await
}

/// The `timestamp` column of a data file.
fn timestamps(file: bytes::Bytes) -> anyhow::Result<Vec<i64>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let index = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == "timestamp")
        .ok_or_else(|| anyhow::anyhow!("no timestamp column"))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut values = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| anyhow::anyhow!("timestamp is not in microseconds"))?;
        values.extend((0..column.len()).map(|i| column.value(i)));
    }
    Ok(values)
}
