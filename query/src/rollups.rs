//! Statements over `logs` answered from the rollups (`warm_table::rollup`) where they answer
//! exactly. An aggregation over `logs` whose grouping and filters use only the hour (or time
//! buckets of whole hours), the cluster and one rollup's dimensions, and whose aggregates are `count(*)`, or `count`, `sum`, `min`,
//! `max`, `avg` of `latency_us` or `response_bytes`, or `approx_percentile_cont(latency_us, q)`
//! (from the latency sketches, `rollup_sketches.rs`), is planned as
//!
//! ```text
//! final aggregate (sum of counts and sums, min of minimums, max of maximums)
//!   union
//!     partial aggregate over the rollup, hours it holds exactly in the range
//!     partial aggregate over logs, every other row (range edges, the open hour, hours not
//!       rolled up yet or with late rows since)
//! ```
//!
//! An hour is held exactly when the rollup's rows of that hour add up to the rows the warm
//! table's log counts for it, checked when the statement is planned. Anything else (other
//! aggregates, DISTINCT, other columns, joins) runs on raw rows as written.
//! `EXPLAIN` shows the rollup's scan; `SET logs.rollups = off` plans every statement on raw rows.

use crate::table::{ROLLUP_TABLE_PREFIX, TABLE};
use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, Result, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, cast, col, lit,
};
use datafusion::prelude::{and, or};
use std::collections::{BTreeMap, BTreeSet};
use warm_table::rollup::Rollup;

/// The warm table the rollups summarise, kept in the session when `--data` is one Delta table
/// with rollups.
#[derive(Debug, Clone)]
pub(crate) struct RollupSource {
    /// The warm table's location.
    pub warm: url::Url,
    /// The rollups built there.
    pub rollups: Vec<Rollup>,
}

datafusion::common::extensions_options! {
    /// `SET logs.<name>` settings.
    pub struct LogsOptions {
        /// Answer aggregations from the rollups where they answer exactly.
        pub rollups: bool, default = true
    }
}

impl datafusion::common::config::ConfigExtension for LogsOptions {
    const PREFIX: &'static str = "logs";
}

/// The setting that turns the rollups off (and on) for the session.
pub(crate) const SETTING: &str = "logs.rollups";

/// The value of `SET logs.rollups = on|off|true|false` as DataFusion takes it; `None` when the
/// statement is something else.
pub(crate) fn setting(
    statement: &datafusion::sql::parser::Statement,
) -> Option<anyhow::Result<String>> {
    use datafusion::sql::sqlparser::ast::{Set, Statement};
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return None;
    };
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement.as_ref()
    else {
        return None;
    };
    if !variable.to_string().eq_ignore_ascii_case(SETTING) {
        return None;
    }
    Some(setting_value(values.first().map(ToString::to_string)))
}

/// `on`, `off`, `true`, `false` (quoted or not) as `true` or `false`.
pub(crate) fn setting_value(value: Option<String>) -> anyhow::Result<String> {
    let value = value.unwrap_or_default();
    match value.trim_matches('\'').to_ascii_lowercase().as_str() {
        "on" | "true" => Ok("true".to_owned()),
        "off" | "false" => Ok("false".to_owned()),
        other => anyhow::bail!("SET {SETTING}: {other:?} is not on or off"),
    }
}

/// Columns every rollup has besides its dimensions.
const ALWAYS: [&str; 3] = ["cluster", "date", "hour"];

/// Rollups from the smallest: the one with the fewest distinct values in its dimensions.
const BY_SIZE: [&str; 5] = [
    "hourly_by_status",
    "hourly_by_path",
    "hourly_by_api_version",
    "hourly_by_message",
    "hourly_by_machine",
];

/// The rollup that lists the machines of each hour.
const MACHINES: &str = "hourly_by_machine";

/// `plan` with every aggregation over `logs` that a rollup answers exactly planned over it.
pub(crate) async fn use_rollups(
    state: &SessionState,
    source: &RollupSource,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    // Found first, rewritten after: the rewrite reads the tables' hour counts (async).
    let mut candidates = Vec::new();
    plan.apply(|node| {
        if let Some(candidate) = Candidate::of(node, source) {
            candidates.push(candidate);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    if candidates.is_empty() {
        return Ok(plan);
    }
    let raw_hours = raw_hour_rows(&source.warm).await?;
    let mut rewritten = BTreeMap::new();
    for candidate in candidates {
        let key = candidate.aggregate.to_string();
        if let Some(new) = candidate.rewrite(state, &raw_hours).await? {
            rewritten.insert(key, new);
        }
    }
    if rewritten.is_empty() {
        return Ok(plan);
    }
    plan.transform_up(|node| match rewritten.remove(&node.to_string()) {
        Some(new) if matches!(node, LogicalPlan::Aggregate(_)) => Ok(Transformed::yes(new)),
        _ => Ok(Transformed::no(node)),
    })
    .map(|t| t.data)?
    .transform_up(|node| node.recompute_schema().map(Transformed::yes))
    .map(|t| t.data)
}

/// An aggregation over `logs` that one rollup could answer.
struct Candidate {
    aggregate: LogicalPlan,
    rollup: Rollup,
    /// Conjuncts on the rollup's columns (the hour, the cluster, its dimensions).
    filters: Vec<Expr>,
    /// The time range the statement reads, `[from, to)`.
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// The machines a `machine IN (...)` or `machine = ...` filter keeps, when the rollup has no
    /// machine: an hour is read from the rollup only if it has no other machine (in the
    /// statement's clusters), as when Grafana's `$machine` is "All".
    machines: Option<BTreeSet<String>>,
}

impl Candidate {
    fn of(node: &LogicalPlan, source: &RollupSource) -> Option<Candidate> {
        let LogicalPlan::Aggregate(aggregate) = node else {
            return None;
        };
        if aggregate
            .group_expr
            .iter()
            .any(|e| !is_hour_bucket(e) && !of_dimensions_only(e))
        {
            return None;
        }
        let (predicate, scan) = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) => (Some(&filter.predicate), filter.input.as_ref()),
            other => (None, other),
        };
        // `logs` as the planner leaves it: the view, inlined under its name.
        let LogicalPlan::SubqueryAlias(alias) = scan else {
            return None;
        };
        if alias.alias.table() != TABLE || alias.alias.schema().is_some() {
            return None;
        }
        let mut needed: Vec<String> = Vec::new();
        for expr in &aggregate.group_expr {
            if !is_hour_bucket(expr) {
                needed.extend(expr.column_refs().into_iter().map(|c| c.name.clone()));
            }
        }
        let mut measures = Vec::new();
        for expr in &aggregate.aggr_expr {
            measures.extend(partial_measures(expr)?);
        }
        let (mut filters, mut from, mut to) = (Vec::new(), None, None);
        let mut machine_filters: Vec<(Expr, BTreeSet<String>)> = Vec::new();
        if let Some(predicate) = predicate {
            for conjunct in split_conjunction(predicate) {
                if let Some(kept) = machines_kept(conjunct) {
                    machine_filters.push((conjunct.clone(), kept));
                    continue;
                }
                let columns: Vec<String> = conjunct
                    .column_refs()
                    .into_iter()
                    .map(|c| c.name.clone())
                    .collect();
                if let Expr::IsNotNull(inner) = conjunct
                    && let Expr::Column(column) = inner.as_ref()
                    && measures
                        .iter()
                        .all(|measure| measure.ignores_nulls_of() == Some(column.name.as_str()))
                {
                    // `latency_us IS NOT NULL` changes nothing every aggregate of latency_us
                    // does not already ignore.
                    continue;
                }
                if columns.iter().all(|c| c == "timestamp") && !columns.is_empty() {
                    narrow_range(conjunct, &mut from, &mut to)?;
                } else {
                    needed.extend(columns);
                    filters.push(conjunct.clone());
                }
            }
        }
        // Grouped by machine: the filter is an ordinary one, on the machines rollup. Otherwise it
        // is checked per hour (see `machines`).
        let mut machines: Option<BTreeSet<String>> = None;
        for (conjunct, kept) in machine_filters {
            if needed.iter().any(|c| c == "machine") {
                filters.push(conjunct);
            } else {
                machines = Some(match machines {
                    Some(before) => before.intersection(&kept).cloned().collect(),
                    None => kept,
                });
            }
        }
        let covers = |rollup: &Rollup| {
            needed.iter().all(|column| {
                ALWAYS.contains(&column.as_str())
                    || rollup.dimensions.iter().any(|d| d.column() == column)
            })
        };
        let rollup = BY_SIZE.iter().find_map(|name| {
            source
                .rollups
                .iter()
                .find(|r| r.name == *name && covers(r))
                .copied()
        })?;
        Some(Candidate {
            aggregate: node.clone(),
            rollup,
            filters,
            from,
            to,
            machines,
        })
    }

    /// The aggregation over the rollup's exact hours and the rest of `logs`, or `None` when no
    /// hour in range is held exactly.
    async fn rewrite(
        &self,
        state: &SessionState,
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
    ) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &self.aggregate else {
            return Ok(None);
        };
        let name = format!("{ROLLUP_TABLE_PREFIX}{}", self.rollup.name);
        let Some(provider) = state.schema_for_ref(name.as_str())?.table(&name).await? else {
            return Ok(None);
        };
        let built = rollup_hour_rows(state, &name).await?;
        let exact: Vec<DateTime<Utc>> = built
            .iter()
            .filter(|(hour, rows)| {
                raw_hours.get(hour) == Some(rows)
                    && self.from.is_none_or(|from| **hour >= from)
                    && self
                        .to
                        .is_none_or(|to| **hour + ChronoDuration::hours(1) <= to)
            })
            .map(|(hour, _)| *hour)
            .collect();
        let exact = match &self.machines {
            None => exact,
            Some(kept) => {
                self.without_other_machines(state, raw_hours, exact, kept)
                    .await?
            }
        };
        if exact.is_empty() {
            return Ok(None);
        }
        let ranges = ranges(&exact);
        let in_ranges = |column: &str, qualifier: &str| {
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
        };
        let output = aggregate.schema.clone();
        let group_names: Vec<String> = (0..aggregate.group_expr.len())
            .map(|i| format!("__group{i}"))
            .collect();
        let group_types = |i: usize| output.field(i).data_type().clone();

        // Over the rollup: its exact hours, the statement's filters on its columns.
        let requalified = |expr: &Expr| requalify(expr, &name);
        let mut rollup_filter = in_ranges("hour_start", &name);
        for filter in &self.filters {
            rollup_filter = and(rollup_filter, requalified(filter)?);
        }
        let (mut from_rollup, mut from_raw) = (Vec::new(), Vec::new());
        for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
            let measures = partial_measures(expr).unwrap_or_default();
            for (j, measure) in measures.iter().enumerate() {
                let alias = format!("__partial{i}_{j}");
                from_rollup.push(measure.over_rollup(&name).alias(&alias));
                from_raw.push(measure.over_raw().alias(&alias));
            }
        }
        let groups = |qualify: &dyn Fn(&Expr) -> Result<Expr>| -> Result<Vec<Expr>> {
            aggregate
                .group_expr
                .iter()
                .enumerate()
                .map(|(i, e)| Ok(cast(qualify(e)?, group_types(i)).alias(&group_names[i])))
                .collect()
        };
        let rollup_part = LogicalPlanBuilder::scan(&name, provider_as_source(provider), None)?
            .filter(rollup_filter)?
            .aggregate(groups(&requalified)?, from_rollup)?
            .build()?;
        // Over `logs`: everything else.
        let raw_filter = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) => and(
                filter.predicate.clone(),
                Expr::Not(Box::new(in_ranges("timestamp", TABLE))),
            ),
            _ => Expr::Not(Box::new(in_ranges("timestamp", TABLE))),
        };
        let scan = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) => filter.input.as_ref().clone(),
            other => other.clone(),
        };
        let raw_part = LogicalPlanBuilder::from(scan)
            .filter(raw_filter)?
            .aggregate(groups(&|e: &Expr| Ok(e.clone()))?, from_raw)?
            .build()?;
        // Both, merged.
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
                    crate::rollup_sketches::sketch_quantile().call(vec![partial(0), lit(*q)])
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
        let merged = LogicalPlanBuilder::from(rollup_part)
            .union(raw_part)?
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
}

impl Candidate {
    /// Of `hours`, those whose machines (in the statement's clusters, as the machines rollup
    /// holds them exactly) are all in `kept`: there the machine filter leaves no row out.
    async fn without_other_machines(
        &self,
        state: &SessionState,
        raw_hours: &BTreeMap<DateTime<Utc>, i64>,
        hours: Vec<DateTime<Utc>>,
        kept: &BTreeSet<String>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let name = format!("{ROLLUP_TABLE_PREFIX}{MACHINES}");
        let Some(provider) = state.schema_for_ref(name.as_str())?.table(&name).await? else {
            return Ok(Vec::new());
        };
        let exact = rollup_hour_rows(state, &name).await?;
        let mut plan = LogicalPlanBuilder::scan(&name, provider_as_source(provider), None)?;
        // The statement's conditions on the cluster (and date, hour) only: a superset of the
        // machines it reads, never fewer.
        for filter in &self.filters {
            if filter
                .column_refs()
                .iter()
                .all(|c| ALWAYS.contains(&c.name.as_str()))
            {
                plan = plan.filter(requalify(filter, &name)?)?;
            }
        }
        let plan = plan
            .aggregate(
                vec![
                    col(Column::new(Some(name.as_str()), "hour_start")),
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
                    && let Some(hour) = DateTime::from_timestamp_micros(starts.value(row))
                {
                    others.insert(hour);
                }
            }
        }
        Ok(hours
            .into_iter()
            .filter(|hour| {
                exact
                    .get(hour)
                    .is_some_and(|rows| raw_hours.get(hour) == Some(rows))
            })
            .filter(|hour| !others.contains(hour))
            .collect())
    }
}

/// The machines `machine IN ('a', 'b')` or `machine = 'a'` keeps; `None` for any other
/// expression.
fn machines_kept(expr: &Expr) -> Option<BTreeSet<String>> {
    let is_machine = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "machine");
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(t))
            | ScalarValue::Utf8View(Some(t))
            | ScalarValue::LargeUtf8(Some(t)),
            _,
        ) => Some(t.clone()),
        _ => None,
    };
    match expr {
        Expr::InList(in_list) if !in_list.negated && is_machine(&in_list.expr) => {
            in_list.list.iter().map(text).collect()
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (column, value) | (value, column) if is_machine(column) => {
                text(value).map(|m| BTreeSet::from([m]))
            }
            _ => None,
        },
        _ => None,
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

/// What one aggregate needs from each side, in order.
#[derive(Debug, Clone)]
enum Measure {
    /// Rows (`count(*)`), or non-null values of a measured column (`count(latency_us)`).
    Count(Option<&'static str>),
    Sum(&'static str),
    Min(&'static str),
    Max(&'static str),
    /// The sum, for an average (with a `Count` after it).
    Average(&'static str),
    /// A percentile of `latency_us`, from the sketches.
    Quantile(f64),
}

impl Measure {
    /// The column whose nulls this measure ignores; `None` for `count(*)`.
    fn ignores_nulls_of(&self) -> Option<&'static str> {
        match self {
            Measure::Count(column) => *column,
            Measure::Sum(c) | Measure::Min(c) | Measure::Max(c) | Measure::Average(c) => Some(c),
            Measure::Quantile(_) => Some("latency_us"),
        }
    }

    fn over_rollup(&self, table: &str) -> Expr {
        let column = |name: String| col(Column::new(Some(table), name));
        match self {
            Measure::Count(None) => sum(column("rows".to_owned())),
            Measure::Count(Some(c)) => sum(column(format!("{c}_count"))),
            Measure::Sum(c) | Measure::Average(c) => sum(column(format!("{c}_sum"))),
            Measure::Min(c) => min(column(format!("{c}_min"))),
            Measure::Max(c) => max(column(format!("{c}_max"))),
            Measure::Quantile(_) => crate::rollup_sketches::sketch_union()
                .call(vec![column("latency_us_sketch".to_owned())]),
        }
    }

    fn over_raw(&self) -> Expr {
        let column = |name: &str| col(Column::new(Some(TABLE), name));
        match self {
            Measure::Count(None) => count(lit(1i64)),
            Measure::Count(Some(c)) => count(column(c)),
            Measure::Sum(c) | Measure::Average(c) => sum(column(c)),
            Measure::Min(c) => min(column(c)),
            Measure::Max(c) => max(column(c)),
            Measure::Quantile(_) => {
                crate::rollup_sketches::sketch_of().call(vec![column("latency_us")])
            }
        }
    }
}

/// The partial measures an aggregate is merged from, `None` when the rollups cannot give it
/// exactly.
fn partial_measures(expr: &Expr) -> Option<Vec<Measure>> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
        return None;
    };
    if params.distinct || params.filter.is_some() {
        return None;
    }
    if func.name() == "approx_percentile_cont" {
        return latency_percentile(params).map(|q| vec![Measure::Quantile(q)]);
    }
    if !params.order_by.is_empty() {
        return None;
    }
    let measured = |args: &[Expr]| match args {
        [Expr::Column(column)] => ["latency_us", "response_bytes"]
            .into_iter()
            .find(|m| *m == column.name),
        _ => None,
    };
    Some(match (func.name(), params.args.as_slice()) {
        ("count", [Expr::Literal(value, _)]) if !value.is_null() => vec![Measure::Count(None)],
        ("count", args) => vec![Measure::Count(Some(measured(args)?))],
        ("sum", args) => vec![Measure::Sum(measured(args)?)],
        ("min", args) => vec![Measure::Min(measured(args)?)],
        ("max", args) => vec![Measure::Max(measured(args)?)],
        ("avg", args) => {
            let column = measured(args)?;
            vec![Measure::Average(column), Measure::Count(Some(column))]
        }
        _ => return None,
    })
}

/// The `q` of `approx_percentile_cont(latency_us, q)` (or `approx_percentile_cont(q) WITHIN
/// GROUP (ORDER BY latency_us)`), a constant between 0 and 1.
fn latency_percentile(
    params: &datafusion::logical_expr::expr::AggregateFunctionParams,
) -> Option<f64> {
    let is_latency = |expr: &Expr| matches!(expr, Expr::Column(c) if c.name == "latency_us");
    let ordered_by_latency = match params.order_by.as_slice() {
        [] => false,
        [sort] if sort.asc && is_latency(&sort.expr) => true,
        _ => return None,
    };
    let q = match params.args.as_slice() {
        [column, Expr::Literal(q, _)] if is_latency(column) => q,
        [Expr::Literal(q, _)] if ordered_by_latency => q,
        _ => return None,
    };
    let q = match q {
        ScalarValue::Float64(Some(q)) => *q,
        ScalarValue::Float32(Some(q)) => f64::from(*q),
        _ => return None,
    };
    (0.0..=1.0).contains(&q).then_some(q)
}

fn split_conjunction(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut out = split_conjunction(left);
            out.extend(split_conjunction(right));
            out
        }
        other => vec![other],
    }
}

/// Narrows `[from, to)` by a conjunct on `timestamp`; `None` when it is not a comparison with a
/// constant time (the statement then runs on raw rows).
fn narrow_range(
    conjunct: &Expr,
    from: &mut Option<DateTime<Utc>>,
    to: &mut Option<DateTime<Utc>>,
) -> Option<()> {
    let mut lower = |at: DateTime<Utc>| *from = Some(from.map_or(at, |f| f.max(at)));
    match conjunct {
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if matches!(expr.as_ref(), Expr::Column(_)) => {
            lower(constant_time(low)?);
            // Inclusive: rows at `high` itself are read.
            let high = constant_time(high)? + ChronoDuration::microseconds(1);
            *to = Some(to.map_or(high, |t| t.min(high)));
            Some(())
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, at) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(_), value) => (*op, constant_time(value)?),
                (value, Expr::Column(_)) => (op.swap()?, constant_time(value)?),
                _ => return None,
            };
            match op {
                Operator::GtEq => lower(at),
                Operator::Gt => lower(at + ChronoDuration::microseconds(1)),
                Operator::Lt => *to = Some(to.map_or(at, |t| t.min(at))),
                Operator::LtEq => {
                    let at = at + ChronoDuration::microseconds(1);
                    *to = Some(to.map_or(at, |t| t.min(at)));
                }
                _ => return None,
            }
            Some(())
        }
        _ => None,
    }
}

/// A constant time: a timestamp literal, or text that reads as one (`'2026-01-01T00:00:00Z'`,
/// `'2026-01-01 00:00:00'`), cast or not.
fn constant_time(expr: &Expr) -> Option<DateTime<Utc>> {
    match expr {
        Expr::Cast(cast) => constant_time(&cast.expr),
        Expr::TryCast(cast) => constant_time(&cast.expr),
        Expr::Literal(value, _) => match value {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)) => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                        .ok()
                        .map(|t| t.and_utc())
                }),
            ScalarValue::TimestampMicrosecond(Some(us), _) => DateTime::from_timestamp_micros(*us),
            ScalarValue::TimestampMillisecond(Some(ms), _) => DateTime::from_timestamp_millis(*ms),
            ScalarValue::TimestampSecond(Some(s), _) => DateTime::from_timestamp(*s, 0),
            ScalarValue::TimestampNanosecond(Some(ns), _) => {
                Some(DateTime::from_timestamp_nanos(*ns))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Consecutive hours as `[from, to)` ranges.
fn ranges(hours: &[DateTime<Utc>]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for hour in hours {
        let end = *hour + ChronoDuration::hours(1);
        match out.last_mut() {
            Some((_, to)) if to == hour => *to = end,
            _ => out.push((*hour, end)),
        }
    }
    out
}

fn timestamp(at: DateTime<Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(at.timestamp_micros()),
        Some("UTC".into()),
    ))
}

/// Whether `expr` is a function of columns other than `timestamp` (which columns, the rollup
/// decides), the same for every row of a rollup's group: `status`, `CAST(status AS VARCHAR)`.
fn of_dimensions_only(expr: &Expr) -> bool {
    !expr.column_refs().iter().any(|c| c.name == "timestamp")
        && !expr.is_volatile()
        && !expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::AggregateFunction(_) | Expr::WindowFunction(_)
                ))
            })
            .unwrap_or(true)
}

/// Whether `expr` buckets `timestamp` by whole hours, so that every row of an hour falls in the
/// bucket of its hour's start: `date_trunc('hour' or coarser, timestamp)`, `date_bin(n hours,
/// timestamp)`, or Grafana's `floor(extract(epoch from timestamp)/N)*N` with N whole hours.
fn is_hour_bucket(expr: &Expr) -> bool {
    use datafusion::logical_expr::expr::ScalarFunction;
    let is_timestamp = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "timestamp");
    let text = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _) => {
            Some(t.to_ascii_lowercase())
        }
        _ => None,
    };
    let whole_hours = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => *n > 0 && n % 3600 == 0,
        Expr::Literal(ScalarValue::Float64(Some(n)), _) => *n > 0.0 && n % 3600.0 == 0.0,
        _ => false,
    };
    let epoch_of_timestamp = |e: &Expr| match e {
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "date_part" => {
            matches!(args.as_slice(), [part, column]
                if text(part).as_deref() == Some("epoch") && is_timestamp(column))
        }
        _ => false,
    };
    match expr {
        Expr::ScalarFunction(ScalarFunction { func, args }) => match (func.name(), args.as_slice())
        {
            ("date_trunc", [unit, column]) => {
                is_timestamp(column)
                    && text(unit).is_some_and(|u| {
                        matches!(
                            u.as_str(),
                            "hour" | "day" | "week" | "month" | "quarter" | "year"
                        )
                    })
            }
            ("date_bin", [Expr::Literal(stride, _), column]) => {
                is_timestamp(column)
                    && match stride {
                        ScalarValue::IntervalMonthDayNano(Some(i)) => {
                            i.months == 0
                                && i.nanoseconds % 3_600_000_000_000 == 0
                                && (i.days > 0 || i.nanoseconds > 0)
                        }
                        ScalarValue::IntervalDayTime(Some(i)) => {
                            i.milliseconds % 3_600_000 == 0 && (i.days > 0 || i.milliseconds > 0)
                        }
                        _ => false,
                    }
            }
            _ => false,
        },
        // floor(extract(epoch from timestamp) / N) * N
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Multiply,
            right,
        }) if whole_hours(right) => match left.as_ref() {
            Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "floor" => {
                matches!(args.as_slice(), [Expr::BinaryExpr(BinaryExpr {
                    left: epoch,
                    op: Operator::Divide,
                    right: divisor,
                })] if divisor == right && epoch_of_timestamp(epoch))
            }
            _ => false,
        },
        _ => false,
    }
}

/// `expr` with its columns read from `table`; `timestamp` (only in an hour bucket, see
/// [`is_hour_bucket`]) as the rollup row's `hour_start`.
fn requalify(expr: &Expr, table: &str) -> Result<Expr> {
    expr.clone()
        .transform(|e| match e {
            Expr::Column(column) => {
                let name = if column.name == "timestamp" {
                    "hour_start".to_owned()
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
async fn raw_hour_rows(warm: &url::Url) -> Result<BTreeMap<DateTime<Utc>, i64>> {
    warm_table::rollup::raw_hour_rows(warm)
        .await
        .map_err(|error| datafusion::error::DataFusionError::External(error.into()))
}

/// Rows of the warm table each hour of the rollup table `name` counts.
async fn rollup_hour_rows(
    state: &SessionState,
    name: &str,
) -> Result<BTreeMap<DateTime<Utc>, i64>> {
    let ctx = datafusion::prelude::SessionContext::new_with_state(state.clone());
    let sql = format!("SELECT hour_start, sum(\"rows\") AS n FROM {name} GROUP BY hour_start");
    let batches = ctx.sql(&sql).await?.collect().await?;
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
