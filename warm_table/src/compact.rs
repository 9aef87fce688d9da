//! `collector compact`: rewrites each closed hour's small files (one per cluster per flush) into
//! few large ones, sorted by time, with delta-rs's OPTIMIZE (Z-order on `timestamp` alone is a
//! sort by time) restricted by partition filters to that hour's directories that hold more than
//! one file.
//!
//! Safe while collectors append and readers read, and safe to kill: the rewrite is one Delta
//! commit that removes the inputs and adds the outputs (`dataChange: false`), so a reader sees
//! either; appends do not conflict with it (they only add files). A killed run leaves files no
//! commit names; `collector retain` vacuums them. Runs need not be exclusive: a second run that
//! races the first fails its commit on the removed files and changes nothing.
//!
//! Then every closed hour missing from the rollups, or stale there, is rolled up (`rollup/`).

use crate::PARTITION_COLUMNS;
use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::schema::partitions::{FilterOp, FilterValue};
use deltalake::operations::optimize::OptimizeType;
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The table: a directory or `s3://` URL.
    pub out: String,
    /// An hour is compacted once it ended at least this long ago (late events still arrive for a
    /// while after an hour ends; compacting again later is fine, only less efficient).
    pub min_age: Duration,
    /// Every hour with more than one file of a cluster, the one in progress included.
    pub open_hour: bool,
    /// Size of the files written.
    pub target_file_size: u64,
    /// Most values kept per bounded rollup dimension, cluster and hour.
    pub rollup_top_values: usize,
    /// What "now" is (tests move it).
    pub now: DateTime<Utc>,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Hours rewritten.
    pub hours_compacted: usize,
    /// Files the rewrite removed from the table.
    pub files_removed: u64,
    /// Files it added.
    pub files_added: u64,
    /// What the rollups' build did.
    pub rollups: crate::rollup::BuildReport,
    /// Time spent rewriting files.
    pub rewrite_time: Duration,
    /// Time spent building rollups and pattern ids.
    pub rollup_time: Duration,
}

/// Compacts every closed hour of the table once; safe to kill at any point.
pub async fn run(options: &CompactOptions) -> anyhow::Result<CompactReport> {
    let url = crate::location(&options.out)?;
    let mut table = crate::open(&url).await?;
    let min_age = ChronoDuration::from_std(options.min_age).context("--min-age is too large")?;
    let mut report = CompactReport::default();
    let started = std::time::Instant::now();
    let closed_before = if options.open_hour {
        DateTime::<Utc>::MAX_UTC
    } else {
        options.now - min_age
    };
    for ((date, hour), clusters) in hours_to_compact(&table, closed_before).await? {
        let cluster_values: Vec<&str> = clusters.iter().map(String::as_str).collect();
        let [date_column, hour_column, cluster_column] = PARTITION_COLUMNS;
        let filters = [
            (
                date_column,
                FilterOp::Eq,
                FilterValue::Scalar(date.as_str()),
            ),
            (
                hour_column,
                FilterOp::Eq,
                FilterValue::Scalar(hour.as_str()),
            ),
            (
                cluster_column,
                FilterOp::In,
                FilterValue::Set(cluster_values),
            ),
        ];
        let target = NonZeroU64::new(options.target_file_size.max(1)).context("target size")?;
        let (optimized, metrics) = table
            .clone()
            .optimize()
            .with_type(OptimizeType::ZOrder(vec!["timestamp".to_owned()]))
            .with_filters(&filters)
            .with_target_size(target)
            .with_writer_properties(logrecord::parquet_file::writer_properties()?)
            .await
            .with_context(|| format!("compacting date={date}/hour={hour}"))?;
        tracing::info!(
            date,
            hour,
            clusters = clusters.len(),
            removed = metrics.num_files_removed,
            added = metrics.num_files_added,
            "hour compacted"
        );
        report.hours_compacted += 1;
        report.files_removed += metrics.num_files_removed;
        report.files_added += metrics.num_files_added;
        table = optimized;
    }
    report.rewrite_time = started.elapsed();
    let started = std::time::Instant::now();
    // Rollups of closed hours only, --open-hour or not: the hour in progress is still growing.
    report.rollups =
        crate::rollup::build_closed_hours(&url, options.now - min_age, options.rollup_top_values)
            .await
            .context("building the rollups")?;
    report.rollup_time = started.elapsed();
    Ok(report)
}

/// Closed hours (ended before `closed_before`) with the clusters that hold more than one file in
/// them.
async fn hours_to_compact(
    table: &DeltaTable,
    closed_before: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<(String, String), Vec<String>>> {
    let snapshot = table.snapshot()?.snapshot().clone();
    let mut files: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut views = snapshot.file_views(table.log_store().as_ref(), None);
    while let Some(view) = views.try_next().await? {
        let values = view.partition_values_map();
        let value = |name: &str| values.get(name).cloned().flatten().unwrap_or_default();
        let [date, hour, cluster] = PARTITION_COLUMNS.map(value);
        *files.entry((date, hour, cluster)).or_default() += 1;
    }
    let mut hours: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for ((date, hour, cluster), count) in files {
        let Ok(start) = chrono::NaiveDateTime::parse_from_str(
            &format!("{date} {hour}:00:00"),
            "%Y-%m-%d %H:%M:%S",
        ) else {
            continue;
        };
        let end = start.and_utc() + ChronoDuration::hours(1);
        if count > 1 && end <= closed_before {
            hours.entry((date, hour)).or_default().push(cluster);
        }
    }
    Ok(hours)
}
