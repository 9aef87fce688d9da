//! The maintenance commands (`compact`, `retain`): one run each, a report on stderr, exit 1 on
//! failure.

use crate::config::{Command, Config};
use std::process::ExitCode;
use warm_table::compact::CompactReport;
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
            .block_on(warm_table::compact::run(&args.options(&config.out, now)))
            .map(|report| format!("collector compact: {}", summary(&report))),
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

/// What a compaction did, in one line.
pub(crate) fn summary(report: &CompactReport) -> String {
    let rollups = &report.rollups;
    format!(
        "{} hours compacted ({} files rewritten into {}) in {:.1} s; {} rollup hours built ({} rollup rows for {} raw rows{}{}) and {} rollup days in {:.1} s; {} log templates in the pattern dictionaries, {} new to their cluster",
        report.hours_compacted,
        report.files_removed,
        report.files_added,
        report.rewrite_time.as_secs_f64(),
        rollups.hours_built,
        rollups.rollup_rows,
        rollups.raw_rows,
        if rollups.per_rollup.is_empty() {
            ""
        } else {
            ": "
        },
        rollups.rows_per_raw_row(),
        rollups.days_built,
        report.rollup_time.as_secs_f64(),
        rollups.patterns.held,
        rollups.patterns.new.len()
    )
}
