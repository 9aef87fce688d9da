//! Daily rollups: an hourly rollup's rows of a UTC day merged into one row per (day, cluster,
//! dimension values). Sums, counts, minimums and maximums merge exactly and sketches merge
//! within their error, so a daily row equals the day's raw rows as an hourly row equals its
//! hour's. Bounded dimensions are bounded again per day and cluster (the most frequent values
//! of the day kept, the rest under `(other)`); where an hour of the day already folded values
//! of a dimension, the day folds every value of it (which values that hour folded is not
//! known), so every value kept in a daily row is exact too.
//!
//! A day is built again whenever its rows do not add up to the rows its hourly rollup holds
//! for that day: an hour of it was built or rebuilt since, or a run died between the two. A
//! day with an hour not closed yet is built from the hours that are, and again as each one is
//! added; `query` reads a day from here only when it equals the warm table's whole day.

use super::aggregate::{
    GroupKey, Groups, Measures, Numbers, OTHER, Value, fold_rare_values, merge_into, regroup,
    to_batch,
};
use super::{Dimension, Rollup, sketch};
use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashSet;

/// The rows of the daily rollup `daily` for the day starting at `day_start`, from the rows of
/// its hourly rollup for that day (`hours`, any number of batches).
pub(super) fn day_rows(
    daily: &Rollup,
    day_start: DateTime<Utc>,
    hours: &[RecordBatch],
    top_values: usize,
) -> anyhow::Result<RecordBatch> {
    let mut groups = Groups::new();
    let other = Value::Text(OTHER.to_owned());
    // (cluster, dimension index) some hour folded values of.
    let mut folded_in_an_hour: HashSet<(String, usize)> = HashSet::new();
    for batch in hours {
        for ((cluster, key), measures) in rows_of(daily, batch)? {
            for (index, value) in key.iter().enumerate() {
                if *value == other {
                    folded_in_an_hour.insert((cluster.clone(), index));
                }
            }
            merge_into(&mut groups, (cluster, key), measures)?;
        }
    }
    if !folded_in_an_hour.is_empty() {
        groups = regroup(groups, |cluster, index, value| {
            if value != Value::Null && folded_in_an_hour.contains(&(cluster.to_owned(), index)) {
                other.clone()
            } else {
                value
            }
        })?;
    }
    let groups = fold_rare_values(daily, groups, top_values)?;
    to_batch(daily, day_start, &groups)
}

/// The start of the day `date` (`YYYY-MM-DD`).
pub(super) fn day_start(date: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .with_context(|| format!("date={date} is not a day"))?
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc())
}

/// Each row of a rollup batch as its group key and measures.
fn rows_of(rollup: &Rollup, batch: &RecordBatch) -> anyhow::Result<Vec<(GroupKey, Measures)>> {
    let column = |name: &str, data_type: &DataType| -> anyhow::Result<arrow::array::ArrayRef> {
        let array = batch
            .column_by_name(name)
            .with_context(|| format!("a rollup batch has no column {name}"))?;
        Ok(cast(array, data_type)?)
    };
    let timestamps = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let clusters = column("cluster", &DataType::Utf8)?;
    let clusters = clusters.as_string::<i32>();
    let dimensions = rollup
        .dimensions
        .iter()
        .map(|d| column(d.column(), &d.data_type()).map(|array| (*d, array)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let int64 = |name: &str| column(name, &DataType::Int64);
    let rows = int64("rows")?;
    let (first, last) = (
        column("first_seen", &timestamps)?,
        column("last_seen", &timestamps)?,
    );
    let numbers = |prefix: &str| -> anyhow::Result<[arrow::array::ArrayRef; 4]> {
        Ok([
            int64(&format!("{prefix}_count"))?,
            int64(&format!("{prefix}_sum"))?,
            int64(&format!("{prefix}_min"))?,
            int64(&format!("{prefix}_max"))?,
        ])
    };
    let (latency, bytes) = (numbers("latency_us")?, numbers("response_bytes")?);
    let sketches = column("latency_us_sketch", &DataType::Binary)?;
    let sketches = sketches.as_binary::<i32>();
    let number_at = |arrays: &[arrow::array::ArrayRef; 4], row: usize| {
        let value = |index: usize| {
            let array = arrays[index].as_primitive::<Int64Type>();
            (!array.is_null(row)).then(|| array.value(row))
        };
        Numbers {
            count: value(0).unwrap_or(0),
            sum: value(1).unwrap_or(0),
            min: value(2),
            max: value(3),
        }
    };
    let time_at = |array: &arrow::array::ArrayRef, row: usize| {
        DateTime::from_timestamp_micros(array.as_primitive::<TimestampMicrosecondType>().value(row))
            .context("a rollup time out of range")
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let key = dimensions
            .iter()
            .map(|(dimension, array)| value_at(*dimension, array, row))
            .collect();
        let measures = Measures {
            rows: rows.as_primitive::<Int64Type>().value(row),
            first_seen: time_at(&first, row)?,
            last_seen: time_at(&last, row)?,
            latency: number_at(&latency, row),
            latency_sketch: match sketches.is_null(row) {
                true => None,
                false => Some(sketch::from_bytes(sketches.value(row))?),
            },
            response_bytes: number_at(&bytes, row),
        };
        out.push(((clusters.value(row).to_owned(), key), measures));
    }
    Ok(out)
}

/// The value at `row` of a dimension's column (cast to the dimension's type).
fn value_at(dimension: Dimension, array: &arrow::array::ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match dimension {
        Dimension::Status => Value::Int(array.as_primitive::<Int32Type>().value(row)),
        Dimension::Pattern => Value::Id(array.as_primitive::<Int64Type>().value(row)),
        _ => Value::Text(array.as_string::<i32>().value(row).to_owned()),
    }
}
