//! What a statement's filters and groupings mean for the rollups: the time range it reads,
//! groupings constant within a rollup group, time buckets of whole hours, the machines kept.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use std::collections::BTreeSet;

/// Narrows `[from, to)` by a conjunct on `timestamp`; `None` when it is not a comparison with a
/// constant time (the statement then runs on raw rows).
pub(super) fn narrow_range(
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
pub(crate) fn constant_time(expr: &Expr) -> Option<DateTime<Utc>> {
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

/// Whether `expr` is a function of columns other than `timestamp` (which columns, the rollup
/// decides), the same for every row of a rollup's group: `status`, `CAST(status AS VARCHAR)`.
pub(super) fn of_dimensions_only(expr: &Expr) -> bool {
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
pub(super) fn is_hour_bucket(expr: &Expr) -> bool {
    is_bucket_of(expr, 3600)
}

/// Whether `expr` buckets `timestamp` by whole (UTC) days, as [`is_hour_bucket`] by hours.
pub(super) fn is_day_bucket(expr: &Expr) -> bool {
    is_bucket_of(expr, 86_400)
}

/// Whether `expr` buckets `timestamp` by whole multiples of `seconds` (an hour or a day) from
/// the epoch, so that every row of such a period falls in the bucket of the period's start.
fn is_bucket_of(expr: &Expr, seconds: i64) -> bool {
    use datafusion::logical_expr::expr::ScalarFunction;
    let is_timestamp = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "timestamp");
    let text = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _) => {
            Some(t.to_ascii_lowercase())
        }
        _ => None,
    };
    let whole_periods = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => *n > 0 && n % seconds == 0,
        Expr::Literal(ScalarValue::Float64(Some(n)), _) => *n > 0.0 && n % seconds as f64 == 0.0,
        _ => false,
    };
    let whole_nanoseconds = |n: i128| n > 0 && n % (i128::from(seconds) * 1_000_000_000) == 0;
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
                        matches!(u.as_str(), "day" | "week" | "month" | "quarter" | "year")
                            || (u == "hour" && seconds == 3600)
                    })
            }
            ("date_bin", [Expr::Literal(stride, _), column]) => {
                is_timestamp(column)
                    && match stride {
                        ScalarValue::IntervalMonthDayNano(Some(i)) => {
                            i.months == 0
                                && i.days >= 0
                                && i.nanoseconds >= 0
                                && whole_nanoseconds(
                                    i128::from(i.days) * 86_400_000_000_000
                                        + i128::from(i.nanoseconds),
                                )
                        }
                        ScalarValue::IntervalDayTime(Some(i)) => {
                            i.days >= 0
                                && i.milliseconds >= 0
                                && whole_nanoseconds(
                                    (i128::from(i.days) * 86_400_000 + i128::from(i.milliseconds))
                                        * 1_000_000,
                                )
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
        }) if whole_periods(right) => match left.as_ref() {
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

/// The machines `machine IN ('a', 'b')` or `machine = 'a'` keeps; `None` for any other
/// expression.
pub(super) fn machines_kept(expr: &Expr) -> Option<BTreeSet<String>> {
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
