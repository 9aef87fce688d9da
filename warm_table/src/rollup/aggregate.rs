//! One closed hour's records -> the rows of one rollup table: a GROUP BY of the hour, the
//! cluster and the rollup's dimensions, with every measure exact (count, sums, minimums and
//! maximums) except the latency sketch (within `sketch::RELATIVE_ERROR`).
//!
//! Dimensions whose values come from callers or from code (path, message, api-version, ...) are
//! bounded: per cluster and hour, the `top_values` most frequent values of each are kept and the
//! rest counted under [`OTHER`]. A flood of a million distinct paths in one hour adds at most
//! `top_values + 1` rows per cluster and level, and every kept value, and the total, stays exact.

use super::{Dimension, Rollup, sketch};
use anyhow::{Context, bail};
use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use chrono::{DateTime, Utc};
use logrecord::LogRecord;
use sketches_ddsketch::DDSketch;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The value a bounded dimension's rare values are counted under.
pub const OTHER: &str = "(other)";

/// A dimension's value in one row. Null is a value of its own, so `path IS NOT NULL` is
/// answered from the rollup as well.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Value {
    Null,
    Int(i32),
    Id(i64),
    Text(String),
}

impl Dimension {
    /// The record's value; `pattern` is its pattern id.
    fn value(self, record: &LogRecord, pattern: Option<i64>) -> Value {
        let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::Text);
        match self {
            Dimension::Level => Value::Text(record.level.as_str().to_owned()),
            Dimension::Status => record
                .status
                .map_or(Value::Null, |status| Value::Int(i32::from(status))),
            Dimension::Method => text(&record.method),
            Dimension::Path => text(&record.path),
            Dimension::ApiVersion => text(&record.api_version),
            Dimension::Format => text(&record.format),
            Dimension::Message => Value::Text(record.message.clone()),
            Dimension::Machine => Value::Text(record.machine.clone()),
            Dimension::Pattern => pattern.map_or(Value::Null, Value::Id),
        }
    }
}

/// A group's measures.
#[derive(Clone)]
struct Measures {
    rows: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    latency: Numbers,
    latency_sketch: Option<DDSketch>,
    response_bytes: Numbers,
}

/// Count, sum, minimum and maximum of a column's non-null values.
#[derive(Debug, Clone, Default)]
struct Numbers {
    count: i64,
    sum: i64,
    min: Option<i64>,
    max: Option<i64>,
}

impl Numbers {
    fn add(&mut self, value: Option<u64>, column: &str) -> anyhow::Result<()> {
        let Some(value) = value else { return Ok(()) };
        let value =
            i64::try_from(value).with_context(|| format!("{column} {value} is above 2^63"))?;
        self.count += 1;
        self.sum = self
            .sum
            .checked_add(value)
            .with_context(|| format!("the hour's sum of {column} overflows 64 bits"))?;
        self.min = Some(self.min.map_or(value, |min| min.min(value)));
        self.max = Some(self.max.map_or(value, |max| max.max(value)));
        Ok(())
    }
}

/// The rows of `rollup` for the hour starting at `hour_start`, from every record of that hour
/// (`patterns`: each record's pattern id, or empty for a rollup without them).
pub(crate) fn hour_rows(
    rollup: &Rollup,
    hour_start: DateTime<Utc>,
    records: &[LogRecord],
    patterns: &[Option<i64>],
    top_values: usize,
) -> anyhow::Result<RecordBatch> {
    let kept = kept_values(rollup, records, top_values);
    let mut groups: BTreeMap<(String, Vec<Value>), Measures> = BTreeMap::new();
    for (row, record) in records.iter().enumerate() {
        let pattern = patterns.get(row).copied().flatten();
        let key: Vec<Value> = rollup
            .dimensions
            .iter()
            .enumerate()
            .map(|(index, dimension)| {
                let value = dimension.value(record, pattern);
                match kept.get(&(record.cluster.as_str(), index)) {
                    Some(kept) if value != Value::Null && !kept.contains(&value) => {
                        Value::Text(OTHER.to_owned())
                    }
                    _ => value,
                }
            })
            .collect();
        let measures = groups
            .entry((record.cluster.clone(), key))
            .or_insert_with(|| Measures {
                rows: 0,
                first_seen: record.timestamp,
                last_seen: record.timestamp,
                latency: Numbers::default(),
                latency_sketch: None,
                response_bytes: Numbers::default(),
            });
        measures.rows += 1;
        measures.first_seen = measures.first_seen.min(record.timestamp);
        measures.last_seen = measures.last_seen.max(record.timestamp);
        measures.latency.add(record.latency_us, "latency_us")?;
        if let Some(latency) = record.latency_us {
            measures
                .latency_sketch
                .get_or_insert_with(sketch::new)
                .add(latency as f64);
        }
        measures
            .response_bytes
            .add(record.response_bytes, "response_bytes")?;
    }
    to_batch(rollup, hour_start, &groups)
}

/// Per cluster and bounded dimension (by its index in the rollup), the values kept: the
/// `top_values` most frequent (ties to the smaller value, so every run keeps the same). Only
/// dimensions with more distinct values than that are listed.
fn kept_values<'a>(
    rollup: &Rollup,
    records: &'a [LogRecord],
    top_values: usize,
) -> HashMap<(&'a str, usize), Vec<Value>> {
    let mut counts: HashMap<(&str, usize), HashMap<Value, u64>> = HashMap::new();
    for record in records {
        for (index, dimension) in rollup.dimensions.iter().enumerate() {
            if dimension.is_bounded() {
                let value = dimension.value(record, None);
                if value != Value::Null {
                    *counts
                        .entry((record.cluster.as_str(), index))
                        .or_default()
                        .entry(value)
                        .or_default() += 1;
                }
            }
        }
    }
    counts
        .into_iter()
        .filter(|(_, values)| values.len() > top_values)
        .map(|(key, values)| {
            let mut values: Vec<(Value, u64)> = values.into_iter().collect();
            values.sort_by(|(a, a_count), (b, b_count)| b_count.cmp(a_count).then(a.cmp(b)));
            values.truncate(top_values);
            (key, values.into_iter().map(|(value, _)| value).collect())
        })
        .collect()
}

fn to_batch(
    rollup: &Rollup,
    hour_start: DateTime<Utc>,
    groups: &BTreeMap<(String, Vec<Value>), Measures>,
) -> anyhow::Result<RecordBatch> {
    let n = groups.len();
    let timestamps = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut hour = timestamps();
    let mut cluster = StringBuilder::new();
    let mut dimensions: Vec<DimensionBuilder> = rollup
        .dimensions
        .iter()
        .map(|dimension| match dimension {
            Dimension::Status => DimensionBuilder::Int(Int32Builder::with_capacity(n)),
            Dimension::Pattern => DimensionBuilder::Id(Int64Builder::with_capacity(n)),
            _ => DimensionBuilder::Text(StringBuilder::new()),
        })
        .collect();
    let (mut rows, mut first_seen, mut last_seen) =
        (Int64Builder::with_capacity(n), timestamps(), timestamps());
    let mut numbers = [(); 8].map(|()| Int64Builder::with_capacity(n));
    let mut latency_sketch = BinaryBuilder::new();
    for ((group_cluster, key), measures) in groups {
        hour.append_value(hour_start.timestamp_micros());
        cluster.append_value(group_cluster);
        for (builder, value) in dimensions.iter_mut().zip(key) {
            builder.append(value)?;
        }
        rows.append_value(measures.rows);
        first_seen.append_value(measures.first_seen.timestamp_micros());
        last_seen.append_value(measures.last_seen.timestamp_micros());
        for (builders, column) in numbers
            .chunks_mut(4)
            .zip([&measures.latency, &measures.response_bytes])
        {
            builders[0].append_value(column.count);
            builders[1].append_option((column.count > 0).then_some(column.sum));
            builders[2].append_option(column.min);
            builders[3].append_option(column.max);
        }
        match &measures.latency_sketch {
            Some(sketch) => latency_sketch.append_value(sketch::to_bytes(sketch)?),
            None => latency_sketch.append_null(),
        }
    }
    let date = hour_start.format("%Y-%m-%d").to_string();
    let hour_of_day = hour_start.format("%H").to_string();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(hour.finish()), Arc::new(cluster.finish())];
    columns.extend(dimensions.iter_mut().map(DimensionBuilder::finish));
    columns.push(Arc::new(rows.finish()));
    columns.push(Arc::new(first_seen.finish()));
    columns.push(Arc::new(last_seen.finish()));
    let [lc, ls, lmin, lmax, bc, bs, bmin, bmax] = &mut numbers;
    for builder in [lc, ls, lmin, lmax] {
        columns.push(Arc::new(builder.finish()));
    }
    columns.push(Arc::new(latency_sketch.finish()));
    for builder in [bc, bs, bmin, bmax] {
        columns.push(Arc::new(builder.finish()));
    }
    columns.push(Arc::new(arrow::array::StringArray::from(vec![date; n])));
    columns.push(Arc::new(arrow::array::StringArray::from(vec![
        hour_of_day;
        n
    ])));
    Ok(RecordBatch::try_new(rollup.schema(), columns)?)
}

enum DimensionBuilder {
    Int(Int32Builder),
    Id(Int64Builder),
    Text(StringBuilder),
}

impl DimensionBuilder {
    fn append(&mut self, value: &Value) -> anyhow::Result<()> {
        match (self, value) {
            (DimensionBuilder::Int(builder), Value::Null) => builder.append_null(),
            (DimensionBuilder::Id(builder), Value::Null) => builder.append_null(),
            (DimensionBuilder::Id(builder), Value::Id(value)) => builder.append_value(*value),
            (DimensionBuilder::Text(builder), Value::Null) => builder.append_null(),
            (DimensionBuilder::Int(builder), Value::Int(value)) => builder.append_value(*value),
            (DimensionBuilder::Text(builder), Value::Text(value)) => builder.append_value(value),
            (_, value) => bail!("a rollup dimension's value {value:?} is of the wrong type"),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            DimensionBuilder::Int(builder) => Arc::new(builder.finish()),
            DimensionBuilder::Id(builder) => Arc::new(builder.finish()),
            DimensionBuilder::Text(builder) => Arc::new(builder.finish()),
        }
    }
}
