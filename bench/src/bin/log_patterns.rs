//! The `patterns` miner on the Loghub 2k samples, the Rust side of `bench/log_patterns.sh`:
//! per dataset, grouping accuracy and lines per second (best of `--repeat` fresh runs over its
//! 2,000 lines, masking included), one JSON object per line, the same fields as
//! `bench/log_patterns_compare.py` prints for Drain3.

use patterns::{Miner, grouping_accuracy, loghub};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> Result<(), String> {
    let mut dir = loghub::default_dir();
    let mut repeat = 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--loghub", Some(value)) => dir = PathBuf::from(value),
            ("--repeat", Some(value)) => {
                repeat = value
                    .parse()
                    .map_err(|_| format!("--repeat {value}: not a count"))?
            }
            _ => return Err("usage: log_patterns [--loghub DIR] [--repeat N]".into()),
        }
    }
    for dataset in loghub::load(&dir)? {
        let templates = dataset.templates();
        let mut best = Duration::MAX;
        for _ in 0..repeat.max(1) {
            let start = Instant::now();
            let mut miner = Miner::new(dataset.settings.clone());
            for line in &dataset.contents {
                std::hint::black_box(miner.add(line));
            }
            best = best.min(start.elapsed());
        }
        let distinct: std::collections::HashSet<&String> = templates.iter().collect();
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
