//! Emit-to-queryable delay of the warm path: watches a store directory and, for every row of every
//! Parquet file the moment the file appears, takes (now - the row's timestamp). Polls every 50 ms,
//! so figures are up to 50 ms pessimistic.
//!
//! `warm_latency DIR SECONDS`: watches for SECONDS, then prints one JSON line with p50, p99, max
//! (milliseconds) and the number of rows seen.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (dir, seconds) = match (args.next(), args.next()) {
        (Some(dir), Some(seconds)) => (PathBuf::from(dir), seconds.parse::<u64>()?),
        _ => anyhow::bail!("usage: warm_latency DIR SECONDS"),
    };
    let mut seen: HashSet<PathBuf> = logrecord::parquet_file::list(&dir).into_iter().collect();
    let mut delays_ms: Vec<f64> = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        for file in logrecord::parquet_file::list(&dir) {
            if seen.insert(file.clone()) {
                let now = chrono::Utc::now();
                for row in logrecord::parquet_file::read(&file)? {
                    delays_ms.push(
                        (now - row.timestamp).num_microseconds().unwrap_or(i64::MAX) as f64
                            / 1000.0,
                    );
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
