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
pub(super) enum Value {
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
pub(super) struct Measures {
    pub(super) rows: i64,
    pub(super) first_seen: DateTime<Utc>,
    pub(super) last_seen: DateTime<Utc>,
    pub(super) latency: Numbers,
    pub(super) latency_sketch: Option<DDSketch>,
    pub(super) response_bytes: Numbers,
}

impl Measures {
    /// `self` with `other`'s rows added (another hour's, or a value folded under `(other)`).
    pub(super) fn merge(&mut self, other: &Measures) -> anyhow::Result<()> {
        self.rows += other.rows;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.latency.merge(&other.latency, "latency_us")?;
        self.response_bytes
            .merge(&other.response_bytes, "response_bytes")?;
        if let Some(sketch) = &other.latency_sketch {
            match &mut self.latency_sketch {
                Some(into) => sketch::merge(into, sketch)?,
                None => self.latency_sketch = Some(sketch.clone()),
            }
        }
        Ok(())
    }
}

/// Count, sum, minimum and maximum of a column's non-null values.
#[derive(Debug, Clone, Default)]
pub(super) struct Numbers {
    pub(super) count: i64,
    pub(super) sum: i64,
    pub(super) min: Option<i64>,
    pub(super) max: Option<i64>,
}

impl Numbers {
    fn merge(&mut self, other: &Numbers, column: &str) -> anyhow::Result<()> {
        self.count += other.count;
        self.sum = self
            .sum
            .checked_add(other.sum)
            .with_context(|| format!("the sum of {column} overflows 64 bits"))?;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

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

/// A group: its cluster and dimension values.
pub(super) type GroupKey = (String, Vec<Value>);

/// Per group, the measures of its rows.
pub(super) type Groups = BTreeMap<GroupKey, Measures>;

/// The rows of `rollup` for the hour starting at `hour_start`, from every record of that hour
/// (`patterns`: each record's pattern id, or empty for a rollup without them).
pub(crate) fn hour_rows(
    rollup: &Rollup,
    hour_start: DateTime<Utc>,
    records: &[LogRecord],
    patterns: &[Option<i64>],
    top_values: usize,
) -> anyhow::Result<RecordBatch> {
    let mut groups = Groups::new();
    for (row, record) in records.iter().enumerate() {
        let pattern = patterns.get(row).copied().flatten();
        let key: Vec<Value> = rollup
            .dimensions
            .iter()
            .map(|dimension| dimension.value(record, pattern))
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
    let groups = fold_rare_values(rollup, groups, top_values)?;
    to_batch(rollup, hour_start, &groups)
}

/// `groups` with, per cluster and bounded dimension, only the `top_values` values with the most
/// rows kept (ties to the smaller value, so every run keeps the same) and the rest merged under
/// [`OTHER`]. Rows already under `OTHER` stay there.
pub(super) fn fold_rare_values(
    rollup: &Rollup,
    groups: Groups,
    top_values: usize,
) -> anyhow::Result<Groups> {
    let other = Value::Text(OTHER.to_owned());
    let mut counts: HashMap<(&str, usize), HashMap<&Value, i64>> = HashMap::new();
    for ((cluster, key), measures) in &groups {
        for (index, dimension) in rollup.dimensions.iter().enumerate() {
            let value = &key[index];
            if dimension.is_bounded() && *value != Value::Null && *value != other {
                *counts
                    .entry((cluster.as_str(), index))
                    .or_default()
                    .entry(value)
                    .or_default() += measures.rows;
            }
        }
    }
    let kept: HashMap<(String, usize), Vec<Value>> = counts
        .into_iter()
        .filter(|(_, values)| values.len() > top_values)
        .map(|((cluster, index), values)| {
            let mut values: Vec<(&Value, i64)> = values.into_iter().collect();
            values.sort_by(|(a, a_count), (b, b_count)| b_count.cmp(a_count).then(a.cmp(b)));
            values.truncate(top_values);
            let values = values.into_iter().map(|(value, _)| value.clone()).collect();
            ((cluster.to_owned(), index), values)
        })
        .collect();
    if kept.is_empty() {
        return Ok(groups);
    }
    regroup(groups, |cluster, index, value| {
        match kept.get(&(cluster.to_owned(), index)) {
            Some(kept) if value != Value::Null && !kept.contains(&value) => other.clone(),
            _ => value,
        }
    })
}

/// `groups` with each dimension value replaced by `map(cluster, dimension index, value)`,
/// groups that become one merged.
pub(super) fn regroup(
    groups: Groups,
    map: impl Fn(&str, usize, Value) -> Value,
) -> anyhow::Result<Groups> {
    let mut out = Groups::new();
    for ((cluster, key), measures) in groups {
        let key: Vec<Value> = key
            .into_iter()
            .enumerate()
            .map(|(index, value)| map(&cluster, index, value))
            .collect();
        merge_into(&mut out, (cluster, key), measures)?;
    }
    Ok(out)
}

/// Adds a group's measures to `groups`, merged with the group's measures already there.
pub(super) fn merge_into(
    groups: &mut Groups,
    key: GroupKey,
    measures: Measures,
) -> anyhow::Result<()> {
    match groups.entry(key) {
        std::collections::btree_map::Entry::Occupied(mut entry) => entry.get_mut().merge(&measures),
        std::collections::btree_map::Entry::Vacant(entry) => {
            entry.insert(measures);
            Ok(())
        }
    }
}

/// The rows of `groups` (per cluster and dimension values) of the period starting at `start`.
pub(super) fn to_batch(
    rollup: &Rollup,
    start: DateTime<Utc>,
    groups: &BTreeMap<(String, Vec<Value>), Measures>,
) -> anyhow::Result<RecordBatch> {
    let n = groups.len();
    let timestamps = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut period = timestamps();
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
        period.append_value(start.timestamp_micros());
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
    let mut columns: Vec<ArrayRef> = vec![Arc::new(period.finish()), Arc::new(cluster.finish())];
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
    for partition in rollup.resolution.partition_columns() {
        let value = match *partition {
            "date" => start.format("%Y-%m-%d").to_string(),
            _ => start.format("%H").to_string(),
        };
        columns.push(Arc::new(arrow::array::StringArray::from(vec![value; n])));
    }
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
