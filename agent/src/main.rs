//! `agent`: parse the configuration, set up telemetry, run until SIGTERM or Ctrl-C.

use agent::config::Config;
use std::process::ExitCode;

/// mimalloc: a request allocates a few dozen small blocks (headers, the log line), and glibc's
/// malloc and free were several percent of the request path's profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = agent::config::command().get_matches();
    let config = match Config::from_matches(&matches) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("agent: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match agent::telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("agent: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = service::shutdown::on_signal();
        agent::run(config, &telemetry, shutdown).await
    });
    // Flush the local log last, so the shutdown events are in it.
    telemetry.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}
