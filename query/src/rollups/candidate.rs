//! An aggregation over `logs` and the rollup that could answer it exactly: which columns it
//! needs, its time range, the machines it keeps.

use super::measures::partial_measures;
use super::predicates::{
    is_day_bucket, is_hour_bucket, machines_kept, narrow_range, of_dimensions_only,
};
use super::{ALWAYS, BY_SIZE, RollupSource};
use crate::table::TABLE;
use chrono::{DateTime, Utc};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::collections::BTreeSet;
use warm_table::rollup::Rollup;

/// An aggregation over `logs` that one rollup could answer.
pub(super) struct Candidate {
    pub(super) aggregate: LogicalPlan,
    pub(super) rollup: Rollup,
    /// Conjuncts on the rollup's columns (the hour, the cluster, its dimensions).
    pub(super) filters: Vec<Expr>,
    /// The time range the statement reads, `[from, to)`.
    pub(super) from: Option<DateTime<Utc>>,
    pub(super) to: Option<DateTime<Utc>>,
    /// The machines a `machine IN (...)` or `machine = ...` filter keeps, when the rollup has no
    /// machine: an hour is read from the rollup only if it has no other machine (in the
    /// statement's clusters), as when Grafana's `$machine` is "All".
    pub(super) machines: Option<BTreeSet<String>>,
    /// The rollup's bounded dimensions the statement groups or filters by: an hour where one
    /// of them counts values under `(other)` is read raw (those values are not in the rollup).
    pub(super) folded: Vec<&'static str>,
    /// The rollup's daily rollup, when it is built and answers the statement for whole days:
    /// its time buckets (if any) are whole days and it does not filter on `hour` (a machine
    /// filter is checked per day against `daily_by_machine`, as per hour).
    pub(super) daily: Option<Rollup>,
}

impl Candidate {
    pub(super) fn of(node: &LogicalPlan, source: &RollupSource) -> Option<Candidate> {
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
        let folded = rollup
            .dimensions
            .iter()
            .filter(|d| d.is_bounded() && needed.iter().any(|c| c == d.column()))
            .map(|d| d.column())
            .collect();
        let by_day = aggregate
            .group_expr
            .iter()
            .all(|e| is_day_bucket(e) || of_dimensions_only(e))
            && !filters
                .iter()
                .any(|f| f.column_refs().iter().any(|c| c.name == "hour"));
        let daily = rollup
            .daily()
            .filter(|daily| by_day && source.rollups.contains(daily));
        Some(Candidate {
            aggregate: node.clone(),
            daily,
            rollup,
            filters,
            from,
            to,
            machines,
            folded,
        })
    }
}
