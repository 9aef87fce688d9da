//! What each aggregate needs from the rollup's side and from raw rows, and how the two merge.

use crate::table::TABLE;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, col, lit};

/// What one aggregate needs from each side, in order.
#[derive(Debug, Clone)]
pub(super) enum Measure {
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
    pub(super) fn ignores_nulls_of(&self) -> Option<&'static str> {
        match self {
            Measure::Count(column) => *column,
            Measure::Sum(c) | Measure::Min(c) | Measure::Max(c) | Measure::Average(c) => Some(c),
            Measure::Quantile(_) => Some("latency_us"),
        }
    }

    pub(super) fn over_rollup(&self, table: &str) -> Expr {
        let column = |name: String| col(Column::new(Some(table), name));
        match self {
            Measure::Count(None) => sum(column("rows".to_owned())),
            Measure::Count(Some(c)) => sum(column(format!("{c}_count"))),
            Measure::Sum(c) | Measure::Average(c) => sum(column(format!("{c}_sum"))),
            Measure::Min(c) => min(column(format!("{c}_min"))),
            Measure::Max(c) => max(column(format!("{c}_max"))),
            Measure::Quantile(_) => {
                super::sketches::sketch_union().call(vec![column("latency_us_sketch".to_owned())])
            }
        }
    }

    pub(super) fn over_raw(&self) -> Expr {
        let column = |name: &str| col(Column::new(Some(TABLE), name));
        match self {
            Measure::Count(None) => count(lit(1i64)),
            Measure::Count(Some(c)) => count(column(c)),
            Measure::Sum(c) | Measure::Average(c) => sum(column(c)),
            Measure::Min(c) => min(column(c)),
            Measure::Max(c) => max(column(c)),
            Measure::Quantile(_) => super::sketches::sketch_of().call(vec![column("latency_us")]),
        }
    }
}

/// The partial measures an aggregate is merged from, `None` when the rollups cannot give it
/// exactly.
pub(super) fn partial_measures(expr: &Expr) -> Option<Vec<Measure>> {
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
