//! `collector retain`: the table keeps `--max-age` of logs, and its rollups (`rollup/`) the same
//! hours. Whole hours older than that are deleted (a Delta DELETE whose predicate names only partition columns: a commit of `remove`
//! actions, no file rewritten), then VACUUM deletes the files no version within `--vacuum-after`
//! refers to: files removed by retention or compaction, and files of flushes or compactions that
//! were killed before they committed.
//!
//! `--vacuum-after` must be longer than the longest query: a query planned on an older version
//! still reads the files that version names. Both steps are safe to kill at any point: the
//! delete is one commit, and VACUUM only deletes files no current version needs, so running it
//! again finishes the job.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deltalake::operations::vacuum::VacuumMode;
use logrecord::layout::Hour;
use std::time::Duration;

/// What to keep.
#[derive(Debug, Clone)]
pub struct RetainOptions {
    /// The table: a directory or `s3://` URL.
    pub out: String,
    /// Hours that ended longer ago than this are deleted.
    pub max_age: Duration,
    /// Files out of the table this long are vacuumed.
    pub vacuum_after: Duration,
    /// What "now" is (tests move it).
    pub now: DateTime<Utc>,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetainReport {
    /// Files the deletion removed from the table.
    pub files_removed: usize,
    /// Files the deletion removed from the rollups.
    pub rollup_files_removed: usize,
    /// Files vacuumed from storage (the table's and the rollups').
    pub files_vacuumed: usize,
}

/// Deletes old hours, then vacuums; safe to kill at any point.
pub async fn run(options: &RetainOptions) -> anyhow::Result<RetainReport> {
    let url = crate::location(&options.out)?;
    let table = crate::open(&url).await?;
    let cutoff = options.now
        - chrono::Duration::from_std(options.max_age).context("--max-age is too large")?;
    // Hours that ended before the cutoff: earlier dates, or the cutoff's date before its hour.
    let (date, hour) = (Hour::of(cutoff).date(), Hour::of(cutoff).hour());
    let [date_column, hour_column, _] = crate::PARTITION_COLUMNS;
    let predicate = format!(
        "{date_column} < '{date}' OR ({date_column} = '{date}' AND {hour_column} < '{hour}')"
    );
    let (table, deleted) = table
        .delete()
        .with_predicate(predicate.clone())
        .await
        .context("deleting old partitions")?;
    let vacuum_after =
        chrono::Duration::from_std(options.vacuum_after).context("--vacuum-after is too large")?;
    let mut report = RetainReport::default();
    // The rollups keep the same hours (same partition columns): a rollup hour without its raw
    // hour could no longer be checked against it. The daily rollups keep the days that still
    // have an hour; the one cut in two no longer adds up to its hours and is built again from
    // the hours left at the next compaction (until then `query` reads it from the hourly).
    let days_predicate = format!("{date_column} < '{date}'");
    let hourly = crate::rollup::ROLLUPS.iter().map(|r| (r, &predicate));
    let daily = crate::rollup::DAILY.iter().map(|r| (r, &days_predicate));
    for (rollup, predicate) in hourly.chain(daily) {
        let Some(rollup_table) = rollup.open(&url).await? else {
            continue;
        };
        let (rollup_table, deleted) = rollup_table
            .delete()
            .with_predicate(predicate.clone())
            .await
            .with_context(|| format!("deleting old hours of the rollup {}", rollup.name))?;
        let vacuumed = vacuum(rollup_table, vacuum_after).await?;
        report.rollup_files_removed += deleted.num_removed_files;
        report.files_vacuumed += vacuumed;
    }
    // The pattern dictionaries keep every template (ids stay; bounded by the miner); their
    // counts follow the trimmed `hourly_by_pattern` at the next compaction. Only the files
    // their rewrites replaced go.
    if let Some(dictionary) = crate::rollup::patterns::open_dictionary(&url).await? {
        report.files_vacuumed += vacuum(dictionary, vacuum_after).await?;
    }
    report.files_removed = deleted.num_removed_files;
    report.files_vacuumed += vacuum(table, vacuum_after).await?;
    Ok(report)
}

/// Deletes the files no version of `table` within `vacuum_after` refers to; how many.
async fn vacuum(
    table: deltalake::DeltaTable,
    vacuum_after: chrono::Duration,
) -> anyhow::Result<usize> {
    let (_, vacuumed) = table
        .vacuum()
        .with_retention_period(vacuum_after)
        // Full: files no commit ever named (a flush or compaction killed before its commit) go
        // too, not only the ones removed by a commit.
        .with_mode(VacuumMode::Full)
        // The retention is the operator's choice (--vacuum-after), not Delta's 7-day default.
        .with_enforce_retention_duration(false)
        .await
        .context("vacuuming unreferenced files")?;
    for file in &vacuumed.files_deleted {
        tracing::debug!(file, "vacuumed");
    }
    Ok(vacuumed.files_deleted.len())
}
