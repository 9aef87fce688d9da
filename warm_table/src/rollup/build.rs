//! Which closed hours each rollup lacks or counts wrongly, and building them again. An hour is
//! stale in a rollup when the rollup's rows of that hour do not add up to the rows the warm
//! table holds for it (read from the log's per-file statistics, without reading data): never
//! built, or rows arrived late after it was built. The warm table is read at one version
//! throughout, so an hour is built from exactly the rows its count was taken from; rows that
//! arrive during the build make it stale again for the next run.

use super::{PARTITION_COLUMNS, ROLLUPS, Rollup, aggregate, daily, patterns};
use crate::location::open_or_create_table;
use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, NaiveDateTime, Utc};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use url::Url;

/// An hour of the table: its `date` and `hour` partition values.
pub(crate) type HourKey = (String, String);

/// What one run built.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// (rollup, hour) pairs built.
    pub hours_built: usize,
    /// (daily rollup, day) pairs built.
    pub days_built: usize,
    /// Raw rows those builds read.
    pub raw_rows: u64,
    /// Rollup rows they wrote.
    pub rollup_rows: u64,
    /// Per rollup: raw rows read and rollup rows written (its rows per raw row).
    pub per_rollup: BTreeMap<&'static str, (u64, u64)>,
    /// What it did to the pattern ids.
    pub patterns: patterns::PatternReport,
}

impl BuildReport {
    /// `name rows/raw rows (rows per raw row)` for each rollup built.
    pub fn rows_per_raw_row(&self) -> String {
        self.per_rollup
            .iter()
            .map(|(name, (raw, rows))| {
                format!(
                    "{name} {rows}/{raw} ({:.4})",
                    *rows as f64 / (*raw).max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Builds, in every rollup, the hours that ended before `closed_before` and are missing or
/// stale there. Safe to kill and to run twice at once (see `mod.rs`).
pub async fn build_closed_hours(
    warm: &Url,
    closed_before: DateTime<Utc>,
    top_values: usize,
) -> anyhow::Result<BuildReport> {
    let table = crate::open(warm).await?;
    let raw = hour_rows(&table, closed_before).await?;
    let mut report = BuildReport::default();
    let mut rollups = Vec::new();
    for rollup in &ROLLUPS {
        let location = rollup.location(warm)?;
        let rollup_table = open_or_create_table(
            &location,
            &rollup.schema(),
            &PARTITION_COLUMNS,
            &format!("the rollup table {}", rollup.name),
        )
        .await?;
        let built = hour_totals(&rollup_table).await?;
        rollups.push((rollup, rollup_table, built));
    }
    let by_pattern = rollups
        .iter()
        .position(|(rollup, _, _)| rollup.name == patterns::BY_PATTERN)
        .context("no pattern rollup")?;
    let mut books = patterns::Books::load(warm, &rollups[by_pattern].1).await?;
    // The pattern hours wait for the dictionaries that name their ids (see `patterns.rs`).
    let mut pattern_hours = Vec::new();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    // Per rollup, the hours of the day being built, committed together when the day changes
    // (one commit per rollup and day, not per hour: a backfill of months makes a few hundred
    // commits per rollup, not thousands).
    let mut day_hours: Vec<Vec<(String, RecordBatch)>> = vec![Vec::new(); rollups.len()];
    let mut day: Option<String> = None;
    for ((date, hour), rows) in &raw {
        if day.as_ref().is_some_and(|day| day != date)
            && let Some(day) = day.take()
        {
            replace_days_hours(&mut rollups, &mut day_hours, &day).await?;
        }
        day = Some(date.clone());
        let stale: Vec<usize> = rollups
            .iter()
            .enumerate()
            .filter(|(_, (_, _, built))| built.get(&(date.clone(), hour.clone())) != Some(rows))
            .map(|(index, _)| index)
            .collect();
        if stale.is_empty() {
            continue;
        }
        let hour_start = hour_start(date, hour)?;
        let batches = ctx
            .read_table(provider.clone())?
            .filter(
                col("date")
                    .eq(lit(date.as_str()))
                    .and(col("hour").eq(lit(hour.as_str()))),
            )?
            .collect()
            .await
            .with_context(|| format!("reading date={date}/hour={hour}"))?;
        let mut records = Vec::new();
        for batch in &batches {
            records.extend(crate::to_records(batch)?);
        }
        // The miner's order within each cluster: time, then machine and its sequence number.
        crate::sort_into_file_order(&mut records);
        let pattern_ids = if stale.contains(&by_pattern) {
            books.assign(&(date.clone(), hour.clone()), &records)
        } else {
            Vec::new()
        };
        for index in stale {
            rollups[index].2.insert((date.clone(), hour.clone()), *rows);
            let rollup = rollups[index].0;
            let batch =
                aggregate::hour_rows(rollup, hour_start, &records, &pattern_ids, top_values)
                    .with_context(|| format!("rolling up date={date}/hour={hour}"))?;
            let written = batch.num_rows() as u64;
            if index == by_pattern {
                pattern_hours.push((date.clone(), hour.clone(), batch));
            } else {
                day_hours[index].push((hour.clone(), batch));
            }
            tracing::info!(
                rollup = rollup.name,
                date,
                hour,
                raw_rows = records.len(),
                rollup_rows = written,
                "rollup hour built"
            );
            report.hours_built += 1;
            report.raw_rows += records.len() as u64;
            report.rollup_rows += written;
            let per = report.per_rollup.entry(rollup.name).or_default();
            per.0 += records.len() as u64;
            per.1 += written;
        }
    }
    if let Some(day) = day {
        replace_days_hours(&mut rollups, &mut day_hours, &day).await?;
    }
    report.patterns = books.commit().await?;
    let mut pattern_days: BTreeMap<String, Vec<(String, RecordBatch)>> = BTreeMap::new();
    for (date, hour, batch) in pattern_hours {
        pattern_days.entry(date).or_default().push((hour, batch));
    }
    let (rollup, rollup_table, _) = &mut rollups[by_pattern];
    for (date, hours) in pattern_days {
        *rollup_table = replace_hours(rollup, rollup_table.clone(), hours, &date).await?;
    }
    // Every reader loads each rollup's log when it starts: kept to a checkpoint and a few
    // commits, not months of them.
    for (rollup, hourly_table, built) in &rollups {
        let (days, daily_table) = build_days(warm, rollup, hourly_table, built, top_values).await?;
        report.days_built += days;
        checkpoint_when_behind(hourly_table).await?;
        if let Some(daily_table) = daily_table {
            checkpoint_when_behind(&daily_table).await?;
        }
    }
    if let Some(dictionary) = patterns::open_dictionary(warm).await? {
        checkpoint_when_behind(&dictionary).await?;
    }
    Ok(report)
}

/// Commits a reader may have to replay after a rollup's newest checkpoint.
const CHECKPOINT_EVERY: i64 = 10;

/// Writes a checkpoint of `table` (loaded at its newest version) when it is
/// [`CHECKPOINT_EVERY`] commits or more past its last one.
async fn checkpoint_when_behind(table: &DeltaTable) -> anyhow::Result<()> {
    let location = table.table_url();
    let version = i64::try_from(table.version().unwrap_or_default()).unwrap_or(i64::MAX);
    let last = object_store::path::Path::from("_delta_log/_last_checkpoint");
    let last = match table.object_store().get(&last).await {
        Ok(found) => serde_json::from_slice::<serde_json::Value>(&found.bytes().await?)
            .ok()
            .and_then(|json| json["version"].as_i64())
            .unwrap_or(-1),
        Err(object_store::Error::NotFound { .. }) => -1,
        Err(error) => return Err(error).with_context(|| format!("reading {location}")),
    };
    if version - last >= CHECKPOINT_EVERY {
        deltalake::checkpoints::create_checkpoint(table, None)
            .await
            .with_context(|| format!("writing a checkpoint of {location}"))?;
    }
    Ok(())
}

/// Builds the days of `rollup`'s daily rollup that do not add up to the rows its hourly table
/// holds for them (`built`: per hour, as this run left it); how many, and the daily table.
async fn build_days(
    warm: &Url,
    rollup: &Rollup,
    hourly_table: &DeltaTable,
    built: &BTreeMap<HourKey, i64>,
    top_values: usize,
) -> anyhow::Result<(usize, Option<DeltaTable>)> {
    let Some(daily) = rollup.daily() else {
        return Ok((0, None));
    };
    let mut daily_table = open_or_create_table(
        &daily.location(warm)?,
        &daily.schema(),
        daily.resolution.partition_columns(),
        &format!("the rollup table {}", daily.name),
    )
    .await?;
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for ((date, _), rows) in built {
        *expected.entry(date.as_str()).or_default() += rows;
    }
    let held = day_totals(&daily_table).await?;
    let stale: Vec<&str> = expected
        .into_iter()
        .filter(|(date, rows)| held.get(*date) != Some(rows))
        .map(|(date, _)| date)
        .collect();
    if stale.is_empty() {
        return Ok((0, Some(daily_table)));
    }
    let ctx = SessionContext::new();
    hourly_table.update_datafusion_session(&ctx.state())?;
    let provider = hourly_table.table_provider().await?;
    for date in &stale {
        let hours = ctx
            .read_table(provider.clone())?
            .filter(col(PARTITION_COLUMNS[0]).eq(lit(*date)))?
            .collect()
            .await
            .with_context(|| format!("reading date={date} of {}", rollup.name))?;
        let batch = daily::day_rows(&daily, daily::day_start(date)?, &hours, top_values)
            .with_context(|| format!("rolling up date={date} of {}", rollup.name))?;
        tracing::info!(
            rollup = daily.name,
            date,
            rollup_rows = batch.num_rows(),
            "rollup day built"
        );
        daily_table = daily_table
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(col(PARTITION_COLUMNS[0]).eq(lit(*date)))
            .with_writer_properties(logrecord::parquet_file::writer_properties()?)
            .await
            .with_context(|| format!("replacing date={date} of {}", daily.name))?;
    }
    Ok((stale.len(), Some(daily_table)))
}

/// Commits, for each rollup, the hours of `date` built since the last call.
async fn replace_days_hours(
    rollups: &mut [(&Rollup, DeltaTable, BTreeMap<HourKey, i64>)],
    day_hours: &mut [Vec<(String, RecordBatch)>],
    date: &str,
) -> anyhow::Result<()> {
    for ((rollup, table, _), hours) in rollups.iter_mut().zip(day_hours.iter_mut()) {
        if !hours.is_empty() {
            *table = replace_hours(rollup, table.clone(), std::mem::take(hours), date).await?;
        }
    }
    Ok(())
}

/// Replaces the rollup's rows of each of `hours` of `date` with its batch, in one commit.
async fn replace_hours(
    rollup: &Rollup,
    table: DeltaTable,
    hours: Vec<(String, RecordBatch)>,
    date: &str,
) -> anyhow::Result<DeltaTable> {
    let [date_column, hour_column] = PARTITION_COLUMNS;
    let (names, batches): (Vec<String>, Vec<RecordBatch>) = hours.into_iter().unzip();
    let list = names.iter().map(|hour| lit(hour.as_str())).collect();
    table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(
            col(date_column)
                .eq(lit(date))
                .and(col(hour_column).in_list(list, false)),
        )
        .with_writer_properties(logrecord::parquet_file::writer_properties()?)
        .await
        .with_context(|| {
            format!(
                "replacing date={date}/hour={} of {}",
                names.join(","),
                rollup.name
            )
        })
}

/// Rows the warm table holds per closed hour, from its log's per-file row counts.
async fn hour_rows(
    table: &DeltaTable,
    closed_before: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<HourKey, i64>> {
    let snapshot = table.snapshot()?.snapshot().clone();
    let mut rows: BTreeMap<HourKey, i64> = BTreeMap::new();
    let mut views = snapshot.file_views(table.log_store().as_ref(), None);
    while let Some(view) = views.try_next().await? {
        let values = view.partition_values_map();
        let value = |name: &str| values.get(name).cloned().flatten().unwrap_or_default();
        let (date, hour) = (value("date"), value("hour"));
        let Ok(start) = hour_start(&date, &hour) else {
            continue;
        };
        if start + chrono::Duration::hours(1) > closed_before {
            continue;
        }
        let count = view
            .num_records()
            .with_context(|| format!("{}: the log has no row count for this file", view.path()))?;
        *rows.entry((date, hour)).or_default() += count as i64;
    }
    Ok(rows)
}

/// Rows the warm table at `warm` holds per hour (every hour), from its log: what a reader checks
/// a rollup's hours against.
pub async fn raw_hour_rows(warm: &Url) -> anyhow::Result<BTreeMap<DateTime<Utc>, i64>> {
    let table = crate::open(warm).await?;
    Ok(hour_rows(&table, DateTime::<Utc>::MAX_UTC)
        .await?
        .into_iter()
        .filter_map(|((date, hour), rows)| Some((hour_start(&date, &hour).ok()?, rows)))
        .collect())
}

/// Rows of the warm table each hour of an hourly rollup table counts (the sum of its `rows`).
pub async fn hour_totals(rollup_table: &DeltaTable) -> anyhow::Result<BTreeMap<HourKey, i64>> {
    let totals = totals_by(rollup_table, &PARTITION_COLUMNS).await?;
    Ok(totals
        .into_iter()
        .filter_map(|(mut key, rows)| {
            let hour = key.pop()?;
            Some(((key.pop()?, hour), rows))
        })
        .collect())
}

/// Rows of the warm table each day of a daily rollup table counts.
pub async fn day_totals(rollup_table: &DeltaTable) -> anyhow::Result<BTreeMap<String, i64>> {
    let totals = totals_by(rollup_table, &PARTITION_COLUMNS[..1]).await?;
    Ok(totals
        .into_iter()
        .filter_map(|(mut key, rows)| Some((key.pop()?, rows)))
        .collect())
}

/// The sum of a rollup table's `rows` per value of its partition columns `partitions`.
async fn totals_by(
    rollup_table: &DeltaTable,
    partitions: &[&str],
) -> anyhow::Result<BTreeMap<Vec<String>, i64>> {
    let ctx = SessionContext::new();
    rollup_table.update_datafusion_session(&ctx.state())?;
    let batches = ctx
        .read_table(rollup_table.table_provider().await?)?
        .aggregate(
            partitions.iter().map(|name| col(*name)).collect(),
            vec![sum(col("rows")).alias("rows")],
        )?
        .collect()
        .await?;
    let mut totals = BTreeMap::new();
    for batch in &batches {
        let keys = (0..partitions.len())
            .map(|index| cast(batch.column(index), &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = batch.column(partitions.len()).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            if !rows.is_null(row) {
                let key = keys
                    .iter()
                    .map(|key| key.as_string::<i32>().value(row).to_owned())
                    .collect();
                totals.insert(key, rows.value(row));
            }
        }
    }
    Ok(totals)
}

fn hour_start(date: &str, hour: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(
        NaiveDateTime::parse_from_str(&format!("{date} {hour}:00:00"), "%Y-%m-%d %H:%M:%S")
            .with_context(|| format!("date={date}/hour={hour} is not an hour"))?
            .and_utc(),
    )
}
