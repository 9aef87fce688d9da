//! `collector`: parse the configuration, set up telemetry, consume until SIGTERM or Ctrl-C.

use clap::Parser;
use collector::config::{Cli, Config};
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("collector: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let prometheus = match collector::telemetry::init() {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("collector: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("collector: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = collector::shutdown::on_signal();
        collector::run(config, prometheus, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}
