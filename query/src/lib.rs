//! `query`: DataFusion SQL over the warm store (a Delta Lake table), the cold-path Parquet files,
//! object stores and agents' admin APIs, read-only.
//!
//! | stage | file |
//! |---|---|
//! | `--data` -> local dir, `s3://`, agent (fetched into a cache) | `source/` (`mod.rs`, `fetch.rs`, `local_reads.rs`) |
//! | sources -> table `logs` (Delta provider or hive listing) with partition columns, ids as text; checked reads, damaged files named | `table/` (`mod.rs`, `uuid_text.rs`, `visible_files.rs`, `latest_delta.rs`, `file_skipping.rs`, `damaged.rs`) |
//! | statement -> policy (read-only, bounds, SQLSTATEs; once per statement, for every caller) -> plan | `policy.rs` |
//! | plan -> aggregations over `logs` from the rollups where they answer exactly | `rollups/` |
//! | plan -> rows (CLI and prompt) | `run.rs` |
//! | no statement -> prompt with history, or statements from stdin | `prompt.rs` |
//! | rows -> table, CSV, JSON lines, Parquet; progress on stderr | `output/` |
//! | `query logs` drill-down, `query patterns` -> SQL | `drilldown.rs` |
//! | `log_pattern(message) OVER (...)`: templates mined over a window (`patterns` crate) | `log_pattern.rs` |
//! | `query serve`: PostgreSQL wire -> the same policy, bounded per caller | `serve/` |
//! | `--cluster`: the same statements on Ballista | `cluster/` |
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod cluster;
mod drilldown;
mod log_pattern;
mod output;
mod pattern_ids;
mod patterns_table;
mod policy;
mod prompt;
mod rollups;
mod run;
mod serve;
mod source;
pub mod table;

use anyhow::{Context, bail};
use cli::{Cli, Command};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use source::Source;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use table::latest_delta::Files;

/// Stack of the runtimes' workers, which evaluate (recursively) what was planned.
pub const WORKER_STACK_BYTES: usize = 64 << 20;

/// Longest error message shown: a damaged commit's error can repeat its input (200 KB).
const ERROR_MESSAGE_BYTES: usize = 4096;

/// What the user is told of `error`: a reader's caught panic as the damaged file it read, and
/// at most [`ERROR_MESSAGE_BYTES`] of it.
pub fn user_message(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let text = table::damaged::explain(&text).unwrap_or(text);
    service::text::bounded(&without_backtraces(&text), ERROR_MESSAGE_BYTES)
}

/// `text` without the backtrace frames some errors carry in their message (delta-kernel's, when
/// RUST_BACKTRACE is set): `   3: function` and `at file:line` lines.
fn without_backtraces(text: &str) -> String {
    let frame = |line: &str| {
        let line = line.trim_start();
        line.starts_with("at ")
            || line
                .split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    text.lines()
        .filter(|line| !(line.starts_with(' ') && frame(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the command line; `Ok(false)` when statements read from stdin failed.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    deltalake::aws::register_handlers(None);
    let now = chrono::Utc::now();
    let (sql, range) = match (&cli.command, &cli.sql) {
        (Some(Command::Logs(args)), None) => (
            Some(drilldown::sql(args, now)?),
            drilldown::range(&args.selection, now)?,
        ),
        (Some(Command::Patterns(args)), None) => (
            Some(drilldown::patterns_sql(args, now)?),
            drilldown::range(&args.selection, now)?,
        ),
        (Some(_), Some(_)) => bail!("give either a SQL statement or a subcommand, not both"),
        (_, sql) => (
            sql.clone(),
            (now - chrono::Duration::from_std(cli.fetch_since)?, now),
        ),
    };
    if cli.format == cli::Format::Parquet && sql.is_none() {
        bail!("--format parquet writes one result to --output: give the statement as an argument");
    }
    if let Some(Command::Serve(args)) = &cli.command {
        serve::init_log();
        let (ctx, _) = session(&cli, range, false, Files::Kept).await?;
        serve::run(ctx, args).await?;
        return Ok(true);
    }
    // One statement reads the Delta log with its own filters; a prompt keeps the files loaded.
    let files = if sql.is_some() {
        Files::PerScan
    } else {
        Files::Kept
    };
    let (ctx, bytes_read) = session(&cli, range, true, files).await?;
    let sql = match &cli.command {
        // From the pattern ids where the store keeps them.
        Some(Command::Patterns(args)) => {
            match pattern_ids::held_periods(&ctx, range.0, range.1).await? {
                Some(held) => Some(drilldown::patterns_sql_from_ids(args, now, &held)?),
                None => sql,
            }
        }
        _ => sql,
    };
    match sql {
        Some(sql) => {
            let answered = async {
                let running = run::execute(&ctx, &sql, &bytes_read).await?;
                output::print::write(running.rows, cli.format, cli.output.as_deref()).await
            };
            if let Err(error) = answered.await {
                let text = format!("{error:#}");
                return Err(match table::damaged::diagnose(&text).await {
                    Some(damage) => anyhow::anyhow!(damage),
                    // The Delta log is replayed as the scan runs: say which table's log failed.
                    None if text.contains("Kernel error") || text.contains("DeltaTable error") => {
                        error.context(format!("reading the Delta log of {}", cli.data.join(", ")))
                    }
                    None => error,
                });
            }
            if let Some(Command::Logs(args)) = &cli.command {
                left_out(&ctx, args, now, &bytes_read).await?;
            }
            Ok(true)
        }
        None => prompt::run(&ctx, cli.format, &bytes_read).await,
    }
}

/// Says on stderr how many rows `query logs` left out when it stopped at its `--limit`.
async fn left_out(
    ctx: &SessionContext,
    args: &cli::LogsArgs,
    now: chrono::DateTime<chrono::Utc>,
    bytes_read: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    use datafusion::arrow::array::{Array, Int64Array};
    use futures::TryStreamExt;
    let running = run::execute(ctx, &drilldown::count_sql(args, now)?, bytes_read).await?;
    let batches: Vec<_> = running.rows.try_collect().await?;
    let matched = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|c| c.value(0))
        })
        .unwrap_or(0);
    let shown = i64::try_from(args.limit).unwrap_or(i64::MAX);
    if matched > shown {
        eprintln!(
            "query logs: showed the newest {shown} of {matched} rows ({} left out): narrow with \
             --since, --level or --grep, or raise --limit",
            matched - shown
        );
    }
    Ok(())
}

/// The session statements run in: table `logs` over `--data`, within the memory limit; and the
/// bytes its scans read (for the progress display). Agent sources are fetched for `range`
/// first, if `agents_allowed` (a server would serve a copy that never changes). A Delta
/// table's files are held as `files` says.
pub async fn session(
    cli: &Cli,
    range: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    agents_allowed: bool,
    files: Files,
) -> anyhow::Result<(SessionContext, Arc<AtomicU64>)> {
    let sources = if cli.data.is_empty() {
        vec!["data/warm".to_owned()]
    } else {
        cli.data.clone()
    };
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (config, runtime) = local_settings(cli, files)?;
    if let Some(cluster_url) = &cli.cluster {
        let ctx = cluster::session(cluster_url, &sources, config, runtime).await?;
        return Ok((ctx, bytes_read));
    }
    let mut opened = Vec::new();
    for text in &sources {
        let source = match Source::parse(text)? {
            Source::Agent(_) if !agents_allowed => bail!(
                "{text}: query serve reads stores (a directory or s3://); query an agent's API with the CLI"
            ),
            Source::Agent(url) => {
                let agent = source::fetch::AgentClient::new(
                    url,
                    cli.token_file.as_deref(),
                    cli.ca_file.as_deref(),
                )?;
                let cache = cli
                    .cache_dir
                    .clone()
                    .unwrap_or_else(source::default_cache_dir);
                Source::Local(agent.fetch(range.0, range.1, &cache).await?)
            }
            other => other,
        };
        opened.push(source::open(&source, &bytes_read)?);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_udwf(log_pattern::udwf());
    table::register(&ctx, opened, files).await?;
    Ok((ctx, bytes_read))
}

/// Room for Parquet footers kept between statements: DataFusion's default where statements
/// repeat, none for one statement.
fn footer_cache_bytes(files: Files) -> usize {
    match files {
        Files::PerScan => 0,
        Files::Kept => CacheManagerConfig::default().metadata_cache_limit,
    }
}

/// The settings statements run with in this process: DataFusion's, and the memory pool.
fn local_settings(cli: &Cli, files: Files) -> anyhow::Result<(SessionConfig, Arc<RuntimeEnv>)> {
    // DataFusion settings can be tuned with DATAFUSION_* variables (e.g.
    // DATAFUSION_EXECUTION_TARGET_PARTITIONS); statements cannot change them (SET is refused).
    let mut config = SessionConfig::from_env()
        .context("a DATAFUSION_* variable")?
        // `SET logs.rollups = off`: statements on raw rows only (`rollups/`).
        .with_option_extension(rollups::LogsOptions::default());
    // Gathering statistics reads every file's footer while planning, and the scan reads them
    // again: over months of hourly files that doubled a full scan's time (BENCHMARKS.md). Row
    // groups are still pruned by their statistics during the scan.
    if std::env::var_os("DATAFUSION_EXECUTION_COLLECT_STATISTICS").is_none() {
        config.options_mut().execution.collect_statistics = false;
    }
    // No listing cache: on a miss DataFusion lists the whole table to fill it, so a one-hour
    // lookup walked every directory of months of partitions; and within a prompt a cached
    // listing would hide the files the collector writes every second. Each statement lists what
    // its partition filters leave (the `date=/hour=/cluster=` prefix it pins).
    //
    // Footers are kept only where statements repeat (the prompt, the server). One statement
    // reads each footer once; keeping them all only kept their memory from being reused, and
    // every fresh page is one the kernel zeroes first: a full scan of 30 days of hourly files
    // took 0.60 s and 266 MB with them kept, 0.54 s and 200 MB without (BENCHMARKS.md).
    //
    // Every statement runs under a memory pool: operators that can spill (sorts, aggregations,
    // joins' sides where supported) spill to the OS temporary directory past the limit; the
    // others fail with DataFusion's "Resources exhausted" naming the largest consumers. Without
    // it a self cross join of `logs` grew to all of RAM and was killed.
    let memory_limit = cli.memory_limit.unwrap_or_else(cli::default_memory_limit);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(
            CacheManagerConfig::default()
                .with_list_files_cache_limit(0)
                .with_metadata_cache_limit(footer_cache_bytes(files)),
        )
        .with_memory_limit(usize::try_from(memory_limit).unwrap_or(usize::MAX), 1.0)
        .build_arc()?;
    Ok((config.with_information_schema(true), runtime))
}
