//! `query`: read-only SQL over the log stores (one statement, a prompt, or statements from
//! stdin), printed as a table, CSV, JSON lines or Parquet.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a full scan over months of small files spent a sixth of its CPU in glibc's malloc
/// (BENCHMARKS.md, `query` against DuckDB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of the thread that plans statements: DataFusion plans expressions recursively, and a
/// statement at `policy::MAX_EXPRESSION_DEPTH` needs far more than a default 8 MiB main thread.
/// Only the pages used are ever committed.
const PLANNER_STACK_BYTES: usize = 512 << 20;

fn main() -> ExitCode {
    let cli = query::cli::Cli::parse();
    query::table::damaged::install_panic_hook();
    let planner = std::thread::Builder::new()
        .name("query".into())
        .stack_size(PLANNER_STACK_BYTES)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(query::WORKER_STACK_BYTES)
                .build()
                .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))?;
            runtime.block_on(query::run(cli))
        });
    let outcome = match planner.map(|thread| thread.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_panic)) => Err(anyhow::anyhow!(
            "the statement's thread panicked: {}",
            query::table::damaged::explain("panicked").unwrap_or_default()
        )),
        Err(error) => Err(anyhow::anyhow!("cannot start a thread: {error}")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("query: {}", query::user_message(&error));
            ExitCode::FAILURE
        }
    }
}
