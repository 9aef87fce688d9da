//! Rolls one raw hourly log file to Parquet with the agent's own roller (the code the agent runs
//! on every closed hour), and prints rows, skipped lines, bytes and seconds as JSON: the
//! measured side of the roll benchmark against DuckDB (`bench/duckdb_compare.py`).
//! Usage: roll_file RAW.log OUT.parquet [THREADS] (default: the number of cores, as the agent)

use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

/// Rolls one raw hourly log file to Parquet with the agent's roller; prints a JSON line.
#[derive(Debug, Parser)]
#[command(name = "roll_file")]
struct Args {
    /// The raw hourly log file.
    raw: PathBuf,
    /// The Parquet file to write.
    out: PathBuf,
    /// Threads that parse and compress. [default: the number of cores]
    #[arg(value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = match args.threads {
        Some(threads) => threads,
        None => std::thread::available_parallelism()?.get(),
    };
    let started = Instant::now();
    let rolled = agent::logs::roller::roll(&args.raw, &args.out, threads)?;
    println!(
        "{{\"rows\":{},\"skipped\":{},\"bytes\":{},\"seconds\":{:.3}}}",
        rolled.rows,
        rolled.skipped,
        rolled.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
