//! `collector`: parse the configuration, set up telemetry, consume until SIGTERM or Ctrl-C;
//! or `collector compact` / `collector retain`.

use clap::FromArgMatches;
use collector::config::{Cli, Config};
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = collector::config::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let command = cli.command.take();
    let config = match Config::from_matches(&matches, &cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("collector: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    warm_table::register_storage();
    if let Some(command) = command {
        return collector::maintenance::run(&config, command);
    }
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
        let shutdown = service::shutdown::on_signal();
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
