//! `collector`: parse the configuration, set up telemetry, consume until SIGTERM or Ctrl-C;
//! or `collector compact`.

use clap::Parser;
use collector::config::{Cli, Command, CompactArgs, Config};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let command = cli.command.take();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("collector: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Compact(args)) = command {
        return compact(&config, &args);
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

fn compact(config: &Config, args: &CompactArgs) -> ExitCode {
    collector::telemetry::init_stderr_only();
    let options = collector::compact::CompactOptions {
        out: config.out.clone(),
        min_age: args.min_age,
        grace: args.grace,
        now: chrono::Utc::now(),
    };
    match collector::compact::run(&options) {
        Ok(report) => {
            eprintln!(
                "collector compact: {} directories compacted ({} files, {} rows merged), {} replaced files deleted",
                report.directories_compacted,
                report.files_merged,
                report.rows,
                report.files_deleted
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("collector compact: {error:#}");
            ExitCode::FAILURE
        }
    }
}
