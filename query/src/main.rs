//! `query`: read-only SQL over the log stores (one statement, a prompt, or statements from
//! stdin), printed as a table, CSV, JSON lines or Parquet.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a full scan over months of small files spent a sixth of its CPU in glibc's malloc
/// (BENCHMARKS.md, cold path).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = query::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("query: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(query::run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("query: {error:#}");
            ExitCode::FAILURE
        }
    }
}
