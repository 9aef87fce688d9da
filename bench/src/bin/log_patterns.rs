//! The `patterns` miner on the Loghub 2k samples, the Rust side of `bench/log_patterns.sh`: per
//! dataset (or the one `--dataset` names), grouping accuracy and lines per second (best of
//! `--repeat` fresh runs over its 2,000 lines, masking included, over at least a second), one
//! JSON object per line, the same fields as `bench/log_patterns_compare.py` prints for Drain3.

use clap::Parser;
use patterns::{Miner, grouping_accuracy, loghub};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Grouping accuracy and lines/s of the patterns miner on the Loghub 2k samples")]
struct Args {
    /// The samples' directory. [default: $LOGHUB_2K, else ../shared/loghub_2k beside the repository]
    #[arg(long)]
    loghub: Option<PathBuf>,
    /// Only this dataset (a key of settings.json, e.g. HDFS).
    #[arg(long)]
    dataset: Option<String>,
    /// Fresh runs per dataset, at least (and at least a second of them).
    #[arg(long, default_value_t = 20)]
    repeat: usize,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let dir = args.loghub.unwrap_or_else(loghub::default_dir);
    let (repeat, only) = (args.repeat, args.dataset);
    for dataset in loghub::load(&dir)? {
        if only.as_ref().is_some_and(|name| *name != dataset.name) {
            continue;
        }
        let templates = dataset.templates();
        // At least `repeat` runs and at least a second: a run takes a millisecond or two, and a
        // short burst of noise on a shared machine would otherwise spoil every sample.
        let mut best = Duration::MAX;
        let measuring = Instant::now();
        let mut runs = 0;
        while runs < repeat.max(1) || measuring.elapsed() < Duration::from_secs(1) {
            runs += 1;
            let start = Instant::now();
            let mut miner = Miner::new(dataset.settings.clone());
            for line in &dataset.contents {
                std::hint::black_box(miner.add(line));
            }
            best = best.min(start.elapsed());
        }
        let distinct: std::collections::HashSet<_> = templates.iter().collect();
        println!(
            "{}",
            serde_json::json!({
                "dataset": dataset.name,
                "lines": dataset.contents.len(),
                "grouping_accuracy": grouping_accuracy(&dataset.events, &templates),
                "templates": distinct.len(),
                "lines_per_second": dataset.contents.len() as f64 / best.as_secs_f64(),
            })
        );
    }
    Ok(())
}
