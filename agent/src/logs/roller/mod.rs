//! The cold path on the host: every closed hourly log file becomes one Parquet file of the shared
//! record schema, `<data-dir>/parquet/date=YYYY-MM-DD/hour=HH/<machine>.YYYY-MM-DD-HH.parquet`
//! (UTC, zstd, sorted by time in row groups of 128k rows), and retention keeps the raw and Parquet
//! files within their ages and the disk budget.
//!
//! Guarantees. A file is rolled once it is closed (its hour ended, plus a grace for the writer's
//! buffer). It is written under a hidden temporary name, its footer's row count checked against
//! the valid lines read, fsynced, then renamed: the Parquet file exists only whole and verified,
//! and its name is fixed by the hour, so re-running after a crash rewrites the same file and
//! never duplicates. Lines that are not records (a line cut short by a crash) are skipped and
//! counted, never fatal. A raw file is deleted only after its Parquet exists and, when the warm
//! path is on, after the shipper's checkpoint has moved past it. All times are UTC from the file
//! names; a clock stepped back only delays rolling and deleting.

pub(crate) mod settings;

use super::local_files::{self, LogFile};
use crate::metrics::{
    DISK_BUDGET_BYTES, DISK_USED_BYTES, RETENTION_DELETED_FILES_TOTAL, ROLLER_ERRORS_TOTAL,
    ROLLER_FILES_TOTAL, ROLLER_ROWS_TOTAL, ROLLER_SKIPPED_LINES_TOTAL, ROLLER_WRITTEN_BYTES_TOTAL,
};
use chrono::{DateTime, Duration as Span, Utc};
use logrecord::layout::Hour;
use logrecord::parquet_file::TEMP_PREFIX;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(10);
/// After the hour ends, the log writer may still flush a few buffered lines of it.
const GRACE: Span = Span::seconds(5);

/// How long files are kept, and the disk budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// How long raw hourly files are kept after their hour (once rolled and shipped).
    pub raw: Duration,
    /// How long hourly Parquet files are kept.
    pub parquet: Duration,
    /// Raw and Parquet together; `None`: no budget.
    pub max_disk_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
/// What the roller thread needs.
pub struct RollerConfig {
    /// Where the raw hourly files are.
    pub log_dir: PathBuf,
    /// Where the hourly Parquet files go.
    pub parquet_dir: PathBuf,
    /// This host's name, in every Parquet file's name.
    pub machine: String,
    /// How long files are kept, and the disk budget.
    pub retention: Retention,
    /// Threads that parse and encode a file (`logrecord::lines_to_parquet`).
    pub threads: usize,
    /// The warm shipper's checkpoint, when the warm path is on: raw files it has not passed stay.
    pub shipper_checkpoint: Option<PathBuf>,
}

/// Starts the roller thread; it stops at `shutdown` (after the pass it is in).
pub fn start(
    config: RollerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Counters exist from the start, at 0: a dashboard sees "nothing rolled yet", not "no data".
    for counter in [
        ROLLER_FILES_TOTAL,
        ROLLER_ROWS_TOTAL,
        ROLLER_WRITTEN_BYTES_TOTAL,
        ROLLER_SKIPPED_LINES_TOTAL,
        ROLLER_ERRORS_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
    std::thread::Builder::new()
        .name("agent-roller".into())
        .spawn(move || {
            remove_leftover_temporaries(&config.parquet_dir);
            while !shutdown.is_cancelled() {
                run_once(&config, Utc::now());
                let mut waited = Duration::ZERO;
                while waited < EVERY && !shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                }
            }
        })
}

/// One pass: roll what is closed, apply retention, report disk use.
pub fn run_once(config: &RollerConfig, now: DateTime<Utc>) {
    let files = local_files::list(&config.log_dir).unwrap_or_default();
    for file in &files {
        let Some(hour) = Hour::from_raw_log_name(&file.name) else {
            continue;
        };
        let target = config.parquet_dir.join(hour.parquet_file(&config.machine));
        let hour = hour.start();
        if now < hour + Span::hours(1) + GRACE || target.exists() {
            continue;
        }
        match roll(&file.path, &target, config.threads) {
            Ok(rolled) => {
                metrics::counter!(ROLLER_FILES_TOTAL).increment(1);
                metrics::counter!(ROLLER_ROWS_TOTAL).increment(rolled.rows as u64);
                metrics::counter!(ROLLER_WRITTEN_BYTES_TOTAL).increment(rolled.bytes);
                metrics::counter!(ROLLER_SKIPPED_LINES_TOTAL).increment(rolled.skipped);
                tracing::info!(file = %file.name, rows = rolled.rows, skipped = rolled.skipped, bytes = rolled.bytes, "hourly log rolled to Parquet");
            }
            Err(error) => {
                metrics::counter!(ROLLER_ERRORS_TOTAL).increment(1);
                tracing::error!(file = %file.name, error = %format!("{error:#}"), "rolling to Parquet failed; retried next pass");
            }
        }
    }
    retention::apply(config, now);
}

/// What one roll produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    /// Records written.
    pub rows: usize,
    /// Lines skipped (not a record: cut short by a crash, or corrupt).
    pub skipped: u64,
    /// Size of the Parquet file, bytes.
    pub bytes: u64,
}

/// Rolls one raw file into `target` on `threads` threads, streaming it a row group at a time.
pub fn roll(raw: &Path, target: &Path, threads: usize) -> anyhow::Result<Rolled> {
    let (staged, read) =
        logrecord::lines_to_parquet::stage(std::fs::File::open(raw)?, target, threads)?;
    let written = staged.publish()?;
    Ok(Rolled {
        rows: written.rows,
        skipped: read.skipped,
        bytes: written.bytes,
    })
}

/// A crash mid-roll leaves a hidden temporary file; it is never completed, so it goes.
fn remove_leftover_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_leftover_temporaries(&path);
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::warn!(file = %path.display(), "removed a Parquet file left half written by a crash")
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "cannot remove a half-written Parquet file")
                }
            }
        }
    }
}

mod retention {
    //! Ages and the budget, oldest first; raw files only once rolled (and shipped).

    use super::*;

    /// A file retention may consider.
    struct Candidate {
        path: PathBuf,
        hour: DateTime<Utc>,
        bytes: u64,
        raw: bool,
        /// Rolled and, with the warm path on, shipped: safe to remove.
        deletable: bool,
    }

    pub(super) fn apply(config: &RollerConfig, now: DateTime<Utc>) {
        let shipped_before = config.shipper_checkpoint.as_ref().map(|path| {
            crate::logs::shipper::checkpoint::Checkpoint::load(path)
                .ok()
                .flatten()
                .map(|c| c.file)
                .unwrap_or_default()
        });
        let mut candidates: Vec<Candidate> = Vec::new();
        for LogFile { name, path } in local_files::list(&config.log_dir).unwrap_or_default() {
            let Some(hour) = Hour::from_raw_log_name(&name) else {
                continue;
            };
            let rolled = config
                .parquet_dir
                .join(hour.parquet_file(&config.machine))
                .exists();
            let hour = hour.start();
            let closed = now >= hour + Span::hours(1) + GRACE;
            // The checkpoint names the file the shipper is in: everything before it is shipped.
            let shipped = shipped_before
                .as_ref()
                .is_none_or(|current| current.as_str() > name.as_str());
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            candidates.push(Candidate {
                path,
                hour,
                bytes,
                raw: true,
                deletable: closed && rolled && shipped,
            });
        }
        for path in logrecord::parquet_file::list(&config.parquet_dir) {
            let Some(hour) = Hour::of_partitioned_file(&path).map(Hour::start) else {
                continue;
            };
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            candidates.push(Candidate {
                path,
                hour,
                bytes,
                raw: false,
                deletable: true,
            });
        }
        // Oldest first; within an hour the raw file before its Parquet.
        candidates.sort_by_key(|c| (c.hour, !c.raw));

        let mut used: u64 = candidates.iter().map(|c| c.bytes).sum();
        // A Parquet file whose raw file is still there would only be rolled again: it stays.
        let mut raw_hours: std::collections::HashSet<DateTime<Utc>> = candidates
            .iter()
            .filter(|c| c.raw)
            .map(|c| c.hour)
            .collect();
        for candidate in &candidates {
            let age = (now - (candidate.hour + Span::hours(1)))
                .to_std()
                .unwrap_or_default();
            let limit = if candidate.raw {
                config.retention.raw
            } else {
                config.retention.parquet
            };
            let over_budget = config
                .retention
                .max_disk_bytes
                .is_some_and(|max| used > max);
            let deletable =
                candidate.deletable && (candidate.raw || !raw_hours.contains(&candidate.hour));
            if deletable
                && (age > limit || over_budget)
                && delete(candidate, if over_budget { "budget" } else { "age" })
            {
                used = used.saturating_sub(candidate.bytes);
                if candidate.raw {
                    raw_hours.remove(&candidate.hour);
                }
            }
        }
        if config
            .retention
            .max_disk_bytes
            .is_some_and(|max| used > max)
        {
            tracing::warn!(
                used,
                max = config.retention.max_disk_bytes,
                "over the disk budget with nothing more that may be deleted (unrolled, unshipped or current files)"
            );
        }
        let (raw, parquet): (Vec<&Candidate>, Vec<&Candidate>) = candidates
            .iter()
            .filter(|c| c.path.exists())
            .partition(|c| c.raw);
        if let Some(max) = config.retention.max_disk_bytes {
            metrics::gauge!(DISK_BUDGET_BYTES).set(max as f64);
        }
        metrics::gauge!(DISK_USED_BYTES, "kind" => "raw")
            .set(raw.iter().map(|c| c.bytes).sum::<u64>() as f64);
        metrics::gauge!(DISK_USED_BYTES, "kind" => "parquet")
            .set(parquet.iter().map(|c| c.bytes).sum::<u64>() as f64);
    }

    fn delete(candidate: &Candidate, reason: &'static str) -> bool {
        let kind = if candidate.raw { "raw" } else { "parquet" };
        match std::fs::remove_file(&candidate.path) {
            Ok(()) => {
                metrics::counter!(RETENTION_DELETED_FILES_TOTAL, "kind" => kind, "reason" => reason).increment(1);
                tracing::info!(file = %candidate.path.display(), kind, reason, "retention removed a file");
                if !candidate.raw
                    && let Some(dir) = candidate.path.parent()
                {
                    // Empty hour and date directories go too.
                    let _ = std::fs::remove_dir(dir)
                        .and_then(|()| dir.parent().map_or(Ok(()), std::fs::remove_dir));
                }
                true
            }
            Err(error) => {
                tracing::warn!(file = %candidate.path.display(), %error, "retention could not remove a file");
                false
            }
        }
    }
}
