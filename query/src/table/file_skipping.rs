//! Which of a statement's filters go down to the Delta scan. delta-rs uses a filter there twice:
//! to skip files (partition values, and the min/max statistics of the log) and, when one is
//! given, as a Parquet row filter (`pushdown_filters`, forced on by its provider). The row filter
//! pays off for a selective filter; for one that keeps most rows (`path IS NOT NULL`, a regular
//! expression) it decodes the filter's columns in a pass of their own and doubled the time of a
//! scan of months (BENCHMARKS.md). So only filters that can skip files go down: those on
//! partition columns alone, comparisons of a column with constants (`=`, `<`, `>=`, `IN`,
//! `BETWEEN`, and `AND`/`OR` of them), which the statistics decide, and a function of one column
//! equal to (or `IN`) constants, such as an id lookup through the view's `uuid_text`, which keeps
//! few rows. DataFusion applies every other filter above the scan, as it does for plain Parquet
//! by default.

use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// Whether `filter` goes to the Delta scan, given the table's partition columns.
pub(crate) fn skips_files(filter: &Expr, partition_columns: &[&str]) -> bool {
    only_partition_columns(filter, partition_columns) || compares_with_constants(filter)
}

fn only_partition_columns(filter: &Expr, partition_columns: &[&str]) -> bool {
    let columns = filter.column_refs();
    !columns.is_empty()
        && columns
            .iter()
            .all(|c| partition_columns.contains(&c.name.as_str()))
}

fn compares_with_constants(filter: &Expr) -> bool {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                compares_with_constants(left) && compares_with_constants(right)
            }
            Operator::Eq => {
                (of_one_column(left) && is_constant(right))
                    || (is_constant(left) && of_one_column(right))
            }
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                (is_column(left) && is_constant(right)) || (is_constant(left) && is_column(right))
            }
            _ => false,
        },
        Expr::InList(InList { expr, list, .. }) => {
            of_one_column(expr) && list.iter().all(is_constant)
        }
        Expr::Between(Between {
            expr, low, high, ..
        }) => is_column(expr) && is_constant(low) && is_constant(high),
        _ => false,
    }
}

/// A column, or a function of one column alone (the `logs` view's `uuid_text(request_id)`):
/// equal to a constant, it keeps few rows, so delta-rs's row filter pays off even where the
/// statistics cannot skip a file.
fn of_one_column(expr: &Expr) -> bool {
    is_column(expr) || (expr.column_refs().len() == 1 && !expr.is_volatile())
}

fn is_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => true,
        // The planner casts a column to a constant's type (`hour = 1` on a text column).
        Expr::Cast(cast) => is_column(&cast.expr),
        Expr::TryCast(cast) => is_column(&cast.expr),
        _ => false,
    }
}

fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(..) => true,
        Expr::Cast(cast) => is_constant(&cast.expr),
        Expr::TryCast(cast) => is_constant(&cast.expr),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::expr_fn::{lower, regexp_like};
    use datafusion::logical_expr::{col, lit};

    const PARTITIONS: &[&str] = &crate::table::WARM_PARTITIONS;

    #[test]
    fn filters_the_statistics_or_partitions_decide_go_down_and_others_stay_above() {
        let down = [
            col("date").gt_eq(lit("2026-01-08")),
            col("machine").eq(lit("host-017")),
            lit(500).lt_eq(col("status")),
            col("latency_us").between(lit(10), lit(20)),
            col("machine").in_list(vec![lit("a"), lit("b")], false),
            col("machine")
                .eq(lit("a"))
                .or(col("status").gt(lit(499)).and(col("status").lt(lit(600)))),
            // Anything on partition columns alone decides which directories are read.
            col("date").like(lit("2026-01-%")),
            col("hour").is_not_null(),
            // An id lookup through the view: few rows pass.
            lower(col("request_id")).eq(lit("4fa4fc1c")),
            lower(col("request_id")).in_list(vec![lit("a"), lit("b")], false),
        ];
        for filter in &down {
            assert!(skips_files(filter, PARTITIONS), "{filter}");
        }
        let above = [
            col("path").is_not_null(),
            regexp_like(col("path"), lit("vmId$"), None),
            col("machine").not_eq(lit("host-017")),
            col("status").eq(col("latency_us")),
            col("machine").eq(lit("a")).or(col("path").is_null()),
            col("date").eq(col("machine")),
            lower(col("path")).gt(lit("a")),
            lower(col("path")).not_eq(lit("a")),
        ];
        for filter in &above {
            assert!(!skips_files(filter, PARTITIONS), "{filter}");
        }
    }
}
