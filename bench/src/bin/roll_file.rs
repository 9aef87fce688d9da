//! Rolls one raw hourly log file to Parquet with the agent's own roller (the code the agent runs
//! on every closed hour), and prints rows, skipped lines, bytes and seconds as JSON: the
//! measured side of the roll benchmark against DuckDB (`bench/duckdb_compare.py`).
//! Usage: roll_file RAW.log OUT.parquet [THREADS] (default: the number of cores, as the agent)

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (raw, out, threads) = match args.as_slice() {
        [raw, out] => (raw, out, std::thread::available_parallelism()?.get()),
        [raw, out, threads] => (raw, out, threads.parse()?),
        _ => anyhow::bail!("usage: roll_file RAW.log OUT.parquet [THREADS]"),
    };
    let started = Instant::now();
    let rolled = agent::logs::roll_to_parquet::roll(
        std::path::Path::new(raw),
        std::path::Path::new(out),
        threads,
    )?;
    println!(
        "{{\"rows\":{},\"skipped\":{},\"bytes\":{},\"seconds\":{:.3}}}",
        rolled.rows,
        rolled.skipped,
        rolled.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
