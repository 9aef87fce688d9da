//! The aggregation planned over the rollup's exactly-held hours and raw rows for the rest,
//! merged, with the original output columns.

use super::candidate::Candidate;
use super::measures::{Measure, partial_measures};
use super::{ALWAYS, MACHINES};
use crate::table::{ROLLUP_TABLE_PREFIX, TABLE};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, Result, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::{and, or};
use std::collections::{BTreeMap, BTreeSet};
use warm_table::rollup::{Resolution, Rollup};

impl Candidate {
    /// The aggregation over the daily rollup's exact days, the hourly rollup's exact hours
    /// outside them, and the rest of `logs`; `None` when no day or hour in range is held
    /// exactly.
    pub(super) async fn rewrite(
        &self,
        state: &SessionState,
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
    ) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &self.aggregate else {
            return Ok(None);
        };
        let days = match &self.daily {
            Some(daily) => self.exact_periods(state, daily, raw_hours, &[]).await?,
            None => Vec::new(),
        };
        let day_set: BTreeSet<DateTime<Utc>> = days.iter().copied().collect();
        let hours: Vec<DateTime<Utc>> = self
            .exact_periods(state, &self.rollup, raw_hours, &days)
            .await?
            .into_iter()
            .filter(|hour| !day_set.contains(&day_start(*hour)))
            .collect();
        if days.is_empty() && hours.is_empty() {
            return Ok(None);
        }
        let output = aggregate.schema.clone();
        let group_names: Vec<String> = (0..aggregate.group_expr.len())
            .map(|i| format!("__group{i}"))
            .collect();
        let group_types = |i: usize| output.field(i).data_type().clone();
        let groups = |qualify: &dyn Fn(&Expr) -> Result<Expr>| -> Result<Vec<Expr>> {
            aggregate
                .group_expr
                .iter()
                .enumerate()
                .map(|(i, e)| Ok(cast(qualify(e)?, group_types(i)).alias(&group_names[i])))
                .collect()
        };
        let (mut from_rollup, mut from_raw) = (Vec::new(), Vec::new());
        for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
            let measures = partial_measures(expr).unwrap_or_default();
            for (j, measure) in measures.iter().enumerate() {
                let alias = format!("__partial{i}_{j}");
                from_rollup.push((measure.clone(), alias.clone()));
                from_raw.push(measure.over_raw().alias(&alias));
            }
        }
        // Over the rollups: their exact periods, the statement's filters on their columns.
        let mut parts = Vec::new();
        let mut covered = Vec::new();
        let daily = self.daily.iter().map(|daily| (daily, &days));
        for (rollup, periods) in daily.chain([(&self.rollup, &hours)]) {
            if periods.is_empty() {
                continue;
            }
            let name = table_name(rollup);
            let start = rollup.resolution.start_column();
            let Some(provider) = state.schema_for_ref(name.as_str())?.table(&name).await? else {
                return Ok(None);
            };
            let ranges = ranges(periods, rollup.resolution.length());
            let requalified = |expr: &Expr| requalify(expr, &name, start);
            let mut filter = in_ranges(&ranges, start, &name);
            for conjunct in &self.filters {
                filter = and(filter, requalified(conjunct)?);
            }
            let measures = from_rollup
                .iter()
                .map(|(measure, alias)| measure.over_rollup(&name).alias(alias))
                .collect::<Vec<_>>();
            parts.push(
                LogicalPlanBuilder::scan(&name, provider_as_source(provider), None)?
                    .filter(filter)?
                    .aggregate(groups(&requalified)?, measures)?
                    .build()?,
            );
            covered.extend(ranges);
        }
        covered.sort();
        // Over `logs`: everything else.
        let outside = Expr::Not(Box::new(in_ranges(&covered, "timestamp", TABLE)));
        let raw_filter = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) => and(filter.predicate.clone(), outside),
            _ => outside,
        };
        let scan = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) => filter.input.as_ref().clone(),
            other => other.clone(),
        };
        // Left out when the log counts no row in the range outside the rollups' periods: a
        // scan of the table plans over every file of it (seconds for months of files) to
        // read nothing.
        let raw_part = LogicalPlanBuilder::from(scan)
            .filter(raw_filter)?
            .aggregate(groups(&|e: &Expr| Ok(e.clone()))?, from_raw)?
            .build()?;
        let raw_part = self
            .reads_rows_outside(&covered, raw_hours)
            .then_some(raw_part);
        // All, merged.
        let mut finals = Vec::new();
        for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
            let measures = partial_measures(expr).unwrap_or_default();
            let partial = |j: usize| col(format!("__partial{i}_{j}"));
            let merged = match measures.as_slice() {
                [Measure::Average(..), Measure::Count(..)] => {
                    let total = cast(sum(partial(0)), arrow::datatypes::DataType::Float64);
                    let rows = cast(sum(partial(1)), arrow::datatypes::DataType::Float64);
                    total
                        / Expr::ScalarFunction(
                            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                                datafusion::functions::core::nullif(),
                                vec![rows, lit(0.0)],
                            ),
                        )
                }
                [Measure::Quantile(q)] => {
                    super::sketches::sketch_quantile().call(vec![partial(0), lit(*q)])
                }
                [Measure::Min(..)] => min(partial(0)),
                [Measure::Max(..)] => max(partial(0)),
                _ => sum(partial(0)),
            };
            finals.push(merged);
        }
        let names: Vec<(Option<TableReference>, String)> = output
            .iter()
            .map(|(qualifier, field)| (qualifier.cloned(), field.name().clone()))
            .collect();
        // The rollups' parts first: the union takes its columns' types from its first input,
        // as the merged aggregates expect them.
        let mut union: Option<LogicalPlanBuilder> = None;
        for part in parts.into_iter().chain(raw_part) {
            union = Some(match union {
                None => LogicalPlanBuilder::from(part),
                Some(union) => union.union(part)?,
            });
        }
        let Some(union) = union else {
            return Ok(None);
        };
        let merged = union
            .aggregate(
                group_names
                    .iter()
                    .map(|n| col(n.as_str()))
                    .collect::<Vec<_>>(),
                finals
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| e.alias(format!("__final{i}")))
                    .collect::<Vec<_>>(),
            )?
            .build()?;
        let restore = restore_names(&output, &names, group_names.len());
        Ok(Some(
            LogicalPlanBuilder::from(merged).project(restore)?.build()?,
        ))
    }

    /// Whether the warm table's log counts rows (`raw_hours`) in an hour of the statement's range
    /// that the `covered` ranges leave out, in whole or in part.
    fn reads_rows_outside(
        &self,
        covered: &[(DateTime<Utc>, DateTime<Utc>)],
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
    ) -> bool {
        let hour = ChronoDuration::hours(1);
        raw_hours.iter().any(|(start, rows)| {
            *rows > 0
                && self.from.is_none_or(|from| *start + hour > from)
                && self.to.is_none_or(|to| *start < to)
                && !covered
                    .iter()
                    .any(|(from, to)| from <= start && *start + hour <= *to)
        })
    }

    /// The periods of `rollup` (hours, or days of a daily rollup) in the statement's range that
    /// it holds exactly (`raw_hours`: the warm table's rows per hour), less those where machines
    /// other than the statement's were seen or where it folded values of a dimension the
    /// statement uses.
    async fn exact_periods(
        &self,
        state: &SessionState,
        rollup: &Rollup,
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
        skip_days: &[DateTime<Utc>],
    ) -> Result<Vec<DateTime<Utc>>> {
        let name = table_name(rollup);
        let start = rollup.resolution.start_column();
        if state
            .schema_for_ref(name.as_str())?
            .table(&name)
            .await?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let exact = held_periods(state, rollup, raw_hours, self.from, self.to, skip_days).await?;
        let exact = match &self.machines {
            None => exact,
            Some(kept) => {
                self.without_other_machines(
                    state,
                    raw_hours,
                    exact,
                    kept,
                    rollup.resolution,
                    skip_days,
                )
                .await?
            }
        };
        if self.folded.is_empty() {
            return Ok(exact);
        }
        let folded = self
            .periods_with_folded_values(state, &name, start, skip_days)
            .await?;
        Ok(exact
            .into_iter()
            .filter(|period| !folded.contains(period))
            .collect())
    }

    /// Periods where the rollup `name` counts values of a dimension the statement uses under
    /// `(other)`, in the statement's clusters.
    async fn periods_with_folded_values(
        &self,
        state: &SessionState,
        name: &str,
        start: &str,
        skip_days: &[DateTime<Utc>],
    ) -> Result<BTreeSet<DateTime<Utc>>> {
        let Some(provider) = state.schema_for_ref(name)?.table(name).await? else {
            return Ok(BTreeSet::new());
        };
        let mut plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?;
        if let Some(dates) = dates_read(self.from, self.to, skip_days) {
            plan = plan.filter(dates)?;
        }
        for filter in &self.filters {
            if filter
                .column_refs()
                .iter()
                .all(|c| ALWAYS.contains(&c.name.as_str()))
            {
                plan = plan.filter(requalify(filter, name, start)?)?;
            }
        }
        let folded = self
            .folded
            .iter()
            .map(|column| {
                cast(
                    col(Column::new(Some(name), *column)),
                    arrow::datatypes::DataType::Utf8,
                )
                .eq(lit(warm_table::rollup::OTHER))
            })
            .reduce(or)
            .unwrap_or_else(|| lit(false));
        let plan = plan
            .filter(folded)?
            .aggregate(
                vec![col(Column::new(Some(name), start))],
                Vec::<Expr>::new(),
            )?
            .build()?;
        let ctx = datafusion::prelude::SessionContext::new_with_state(state.clone());
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        let mut hours = BTreeSet::new();
        for batch in &batches {
            use arrow::array::AsArray;
            let starts = batch
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            hours.extend(
                starts
                    .iter()
                    .flatten()
                    .filter_map(DateTime::from_timestamp_micros),
            );
        }
        Ok(hours)
    }

    /// Of `periods` (of `resolution`), those whose machines (in the statement's clusters, as
    /// the machines rollup of that resolution holds them exactly) are all in `kept`: there the
    /// machine filter leaves no row out.
    pub(super) async fn without_other_machines(
        &self,
        state: &SessionState,
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
        periods: Vec<DateTime<Utc>>,
        kept: &BTreeSet<String>,
        resolution: Resolution,
        skip_days: &[DateTime<Utc>],
    ) -> Result<Vec<DateTime<Utc>>> {
        let Some(hourly) = warm_table::rollup::ROLLUPS
            .iter()
            .find(|rollup| rollup.name == MACHINES)
        else {
            return Ok(Vec::new());
        };
        let machines = match resolution {
            Resolution::Hour => Some(*hourly),
            Resolution::Day => hourly.daily(),
        };
        let Some(machines) = machines else {
            return Ok(Vec::new());
        };
        let name = table_name(&machines);
        let start = resolution.start_column();
        let Some(provider) = state.schema_for_ref(name.as_str())?.table(&name).await? else {
            return Ok(Vec::new());
        };
        let exact: BTreeSet<DateTime<Utc>> =
            held_periods(state, &machines, raw_hours, self.from, self.to, skip_days)
                .await?
                .into_iter()
                .collect();
        let mut plan = LogicalPlanBuilder::scan(&name, provider_as_source(provider), None)?;
        if let Some(dates) = dates_read(self.from, self.to, skip_days) {
            plan = plan.filter(dates)?;
        }
        // The statement's conditions on the cluster (and date, hour) only: a superset of the
        // machines it reads, never fewer.
        for filter in &self.filters {
            if filter
                .column_refs()
                .iter()
                .all(|c| ALWAYS.contains(&c.name.as_str()))
            {
                plan = plan.filter(requalify(filter, &name, start)?)?;
            }
        }
        let plan = plan
            .aggregate(
                vec![
                    col(Column::new(Some(name.as_str()), start)),
                    cast(
                        col(Column::new(Some(name.as_str()), "machine")),
                        arrow::datatypes::DataType::Utf8,
                    )
                    .alias("machine"),
                ],
                Vec::<Expr>::new(),
            )?
            .build()?;
        let ctx = datafusion::prelude::SessionContext::new_with_state(state.clone());
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        let mut others: BTreeSet<DateTime<Utc>> = BTreeSet::new();
        for batch in &batches {
            use arrow::array::{Array, AsArray};
            let starts = batch
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let machines = batch.column(1).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let machine = (!machines.is_null(row)).then(|| machines.value(row));
                if !machine.is_some_and(|m| kept.contains(m))
                    && let Some(period) = DateTime::from_timestamp_micros(starts.value(row))
                {
                    others.insert(period);
                }
            }
        }
        Ok(periods
            .into_iter()
            .filter(|period| exact.contains(period) && !others.contains(period))
            .collect())
    }
}

/// The original aggregation's output columns, by name and type, over the merged one.
fn restore_names(
    output: &DFSchemaRef,
    names: &[(Option<TableReference>, String)],
    groups: usize,
) -> Vec<Expr> {
    names
        .iter()
        .enumerate()
        .map(|(i, (qualifier, name))| {
            let source = if i < groups {
                format!("__group{i}")
            } else {
                format!("__final{}", i - groups)
            };
            cast(col(source), output.field(i).data_type().clone())
                .alias_qualified(qualifier.clone(), name)
        })
        .collect()
}

/// The periods (hours, or days) of `rollup` wholly in `[from, to)` and not in `skip_days` whose
/// rows add up to the rows the warm table's log counts for them (`raw_hours`, per hour).
pub(crate) async fn held_periods(
    state: &SessionState,
    rollup: &Rollup,
    raw_hours: &BTreeMap<DateTime<Utc>, i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    skip_days: &[DateTime<Utc>],
) -> Result<Vec<DateTime<Utc>>> {
    let start = rollup.resolution.start_column();
    let dates = dates_read(from, to, skip_days);
    let built = period_rows(state, &table_name(rollup), start, dates).await?;
    let length = rollup.resolution.length();
    Ok(match rollup.resolution {
        Resolution::Hour => held_exactly(&built, raw_hours, from, to, length),
        Resolution::Day => held_exactly(&built, &day_rows(raw_hours), from, to, length),
    })
}

/// The periods of a rollup (`built`: rows it counts per period, by start; each `length` long)
/// that lie wholly in `[from, to)` and hold exactly the rows the warm table's log counts for
/// them (`raw`, by the same periods).
fn held_exactly(
    built: &BTreeMap<DateTime<Utc>, i64>,
    raw: &BTreeMap<DateTime<Utc>, i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    length: ChronoDuration,
) -> Vec<DateTime<Utc>> {
    built
        .iter()
        .filter(|(start, rows)| {
            raw.get(start) == Some(rows)
                && from.is_none_or(|from| **start >= from)
                && to.is_none_or(|to| **start + length <= to)
        })
        .map(|(start, _)| *start)
        .collect()
}

/// Consecutive periods (by start, each `length` long) as `[from, to)` ranges.
pub(crate) fn ranges(
    periods: &[DateTime<Utc>],
    length: ChronoDuration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for start in periods {
        let end = *start + length;
        match out.last_mut() {
            Some((_, to)) if to == start => *to = end,
            _ => out.push((*start, end)),
        }
    }
    out
}

/// `column` of `qualifier` within one of `ranges`.
fn in_ranges(ranges: &[(DateTime<Utc>, DateTime<Utc>)], column: &str, qualifier: &str) -> Expr {
    ranges
        .iter()
        .map(|(from, to)| {
            let column = col(Column::new(Some(qualifier), column));
            and(
                column.clone().gt_eq(timestamp(*from)),
                column.lt(timestamp(*to)),
            )
        })
        .reduce(or)
        .unwrap_or_else(|| lit(false))
}

/// The partitions (`date`) a check of periods within `[from, to)` and outside `skip_days` reads:
/// the statement's dates, less the days already answered; `None` for every date.
fn dates_read(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    skip_days: &[DateTime<Utc>],
) -> Option<Expr> {
    let date = |at: DateTime<Utc>| lit(at.format("%Y-%m-%d").to_string());
    let mut conditions = Vec::new();
    if let Some(from) = from {
        conditions.push(col("date").gt_eq(date(from)));
    }
    if let Some(to) = to {
        conditions.push(col("date").lt_eq(date(to)));
    }
    if !skip_days.is_empty() {
        conditions.push(col("date").in_list(skip_days.iter().map(|d| date(*d)).collect(), true));
    }
    conditions.into_iter().reduce(and)
}

/// The start of the UTC day of `at`.
pub(crate) fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Rows per day, from rows per hour.
fn day_rows(hours: &BTreeMap<DateTime<Utc>, i64>) -> BTreeMap<DateTime<Utc>, i64> {
    let mut days = BTreeMap::new();
    for (hour, rows) in hours {
        *days.entry(day_start(*hour)).or_default() += rows;
    }
    days
}

/// The name a rollup's table is registered under.
fn table_name(rollup: &Rollup) -> String {
    format!("{ROLLUP_TABLE_PREFIX}{}", rollup.name)
}

fn timestamp(at: DateTime<Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(at.timestamp_micros()),
        Some("UTC".into()),
    ))
}

/// `expr` with its columns read from `table`; `timestamp` (only in a bucket of whole periods
/// of the rollup, see `is_hour_bucket`) as the rollup row's `start` of period.
fn requalify(expr: &Expr, table: &str, start: &str) -> Result<Expr> {
    expr.clone()
        .transform(|e| match e {
            Expr::Column(column) => {
                let name = if column.name == "timestamp" {
                    start.to_owned()
                } else {
                    column.name
                };
                Ok(Transformed::yes(col(Column::new(Some(table), name))))
            }

            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

/// Rows the warm table's log counts per hour (all hours).
pub(super) async fn raw_hour_rows(warm: &url::Url) -> Result<BTreeMap<DateTime<Utc>, i64>> {
    warm_table::rollup::raw_hour_rows(warm)
        .await
        .map_err(|error| datafusion::error::DataFusionError::External(error.into()))
}

/// Rows of the warm table each period of the rollup table `name` counts, by the period's
/// start (its column `start`).
async fn period_rows(
    state: &SessionState,
    name: &str,
    start: &str,
    dates: Option<Expr>,
) -> Result<BTreeMap<DateTime<Utc>, i64>> {
    let ctx = datafusion::prelude::SessionContext::new_with_state(state.clone());
    let mut frame = ctx.table(name).await?;
    if let Some(dates) = dates {
        frame = frame.filter(dates)?;
    }
    let batches = frame
        .aggregate(vec![col(start)], vec![sum(col("rows")).alias("n")])?
        .collect()
        .await?;
    let mut out = BTreeMap::new();
    for batch in &batches {
        use arrow::array::{Array, AsArray};
        let hours = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let rows = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..batch.num_rows() {
            if let (false, Some(hour)) = (
                rows.is_null(i),
                DateTime::from_timestamp_micros(hours.value(i)),
            ) {
                out.insert(hour, rows.value(i));
            }
        }
    }
    Ok(out)
}
