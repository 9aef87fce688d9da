//! The maintenance commands (`compact`, `retain`): one run each, a report on stderr, exit 1 on
//! failure.

use crate::config::{Command, Config};
use std::process::ExitCode;
use warm_table::compact::CompactOptions;
use warm_table::retain::RetainOptions;

/// Runs `collector compact` or `collector retain` to its end; the exit code says how it went.
pub fn run(config: &Config, command: Command) -> ExitCode {
    crate::telemetry::init_stderr_only();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("collector: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let now = chrono::Utc::now();
    let result = match command {
        Command::Compact(args) => runtime
            .block_on(warm_table::compact::run(&CompactOptions {
                out: config.out.clone(),
                min_age: args.min_age,
                open_hour: args.open_hour,
                target_file_size: args.target_file_size,
                rollup_top_values: args.rollup_top_values,
                now,
            }))
            .map(|report| {
                format!(
                    "collector compact: {} hours compacted ({} files rewritten into {}); {} rollup hours built ({} rollup rows for {} raw rows{}{}); {} log templates in the pattern dictionaries, {} new",
                    report.hours_compacted,
                    report.files_removed,
                    report.files_added,
                    report.rollups.hours_built,
                    report.rollups.rollup_rows,
                    report.rollups.raw_rows,
                    if report.rollups.per_rollup.is_empty() { "" } else { ": " },
                    report.rollups.rows_per_raw_row(),
                    report.rollups.patterns.held,
                    report.rollups.patterns.new.len()
                )
            }),
        Command::Retain(args) => runtime
            .block_on(warm_table::retain::run(&RetainOptions {
                out: config.out.clone(),
                max_age: args.max_age,
                vacuum_after: args.vacuum_after,
                now,
            }))
            .map(|report| {
                format!(
                    "collector retain: {} files of old hours removed from the table and {} from its rollups, {} files out of them deleted",
                    report.files_removed, report.rollup_files_removed, report.files_vacuumed
                )
            }),
    };
    match result {
        Ok(report) => {
            eprintln!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}
