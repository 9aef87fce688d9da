//! Statements over `logs` answered from the rollups (`warm_table::rollup`) where they answer
//! exactly. An aggregation over `logs` whose grouping and filters use only the hour (or time
//! buckets of whole hours), the cluster and one rollup's dimensions, and whose aggregates are `count(*)`, or `count`, `sum`, `min`,
//! `max`, `avg` of `latency_us` or `response_bytes`, or `approx_percentile_cont(latency_us, q)`
//! (from the latency sketches, `sketches.rs`), is planned as
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
//!
//! | what | file |
//! |---|---|
//! | `SET logs.rollups`, finding candidates, swapping them in | `mod.rs` |
//! | an aggregation over `logs` -> the rollup that could answer it | `candidate.rs` |
//! | what its filters and groupings mean (time range, hour buckets, machines kept) | `predicates.rs` |
//! | its aggregates -> partial measures on each side, and how they merge | `measures.rs` |
//! | the union of the rollup's exact hours and raw rows, merged | `rewrite.rs` |
//! | the sketch aggregates percentiles are planned with | `sketches.rs` |

mod candidate;
mod measures;
mod predicates;
mod rewrite;
mod sketches;

use candidate::Candidate;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
pub(crate) use predicates::constant_time;
use rewrite::raw_hour_rows;
pub(crate) use rewrite::{day_start, held_periods, ranges};
use std::collections::BTreeMap;
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

/// Whether `SET logs.rollups` leaves them on (the default).
pub(crate) fn enabled(state: &SessionState) -> bool {
    state
        .config()
        .options()
        .extensions
        .get::<LogsOptions>()
        .is_none_or(|options| options.rollups)
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
