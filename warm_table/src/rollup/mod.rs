//! Rollup tables: aggregates of the warm table kept beside it, so that questions over months
//! read a few rows per cluster and hour instead of every event (as ClickHouse's aggregate
//! projections or Druid's rollups do).
//!
//! Each rollup is a Delta table under the warm table's root, in `_rollups/<name>/` (a directory
//! starting with `_` is outside the warm table for every Delta reader, and VACUUM leaves it alone),
//! partitioned by `date` and `hour` like the warm table. A row is one (hour, cluster, dimension
//! values) group with its measures: `rows`, `first_seen`, `last_seen`, and for `latency_us` and
//! `response_bytes` the count of non-null values, sum, minimum and maximum, plus a latency sketch
//! (`sketch.rs`, 1% relative error). Every count, sum, minimum and maximum equals the raw rows'.
//!
//! Built by `collector compact` from closed hours (`build.rs`): an hour whose rollup does not
//! count as many rows as the warm table holds for it (never built, or late rows arrived since) is
//! built again from its raw rows; the hours of a day built by a run replace the rollup's rows of
//! those hours in one Delta commit per rollup. A rerun, a second compactor or a compactor killed
//! mid-run never counts a row twice: an hour is replaced, never appended to, and a build that
//! races another one fails its commit. Retention
//! (`collector retain`) trims the rollups with the warm table, to the same horizon.
//!
//! | what | file |
//! |---|---|
//! | records of an hour -> rows of a rollup, bounded dimensions | `aggregate.rs` |
//! | the latency sketch | `sketch.rs` |
//! | which hours are stale, building and replacing them | `build.rs` |
//! | pattern ids and the template dictionary | `patterns.rs` |

mod aggregate;
mod build;
pub mod patterns;
pub mod sketch;

pub use aggregate::OTHER;
pub use build::{BuildReport, build_closed_hours, hour_totals, raw_hour_rows};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;
use url::Url;

/// Where the rollups live, under the warm table's root.
pub const ROLLUPS_DIR: &str = "_rollups";

/// Most values kept per bounded dimension, cluster and hour by default.
pub const DEFAULT_TOP_VALUES: usize = 100;

/// A column a rollup groups by (besides the hour and the cluster, which every rollup has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// `level`.
    Level,
    /// `status`, the HTTP status of request events.
    Status,
    /// `method` (from callers: bounded).
    Method,
    /// `path` (from callers: bounded).
    Path,
    /// `api_version` (from callers: bounded).
    ApiVersion,
    /// `format` (from callers: bounded).
    Format,
    /// `message` (from code and its arguments: bounded).
    Message,
    /// `machine` (from each agent's configuration, not from callers: not bounded, since a
    /// machine counted under `(other)` could never be proven absent from an hour).
    Machine,
    /// `pattern_id`, the id of the row's template in its cluster's dictionary (`patterns.rs`;
    /// bounded by the miner's template bound).
    Pattern,
}

impl Dimension {
    /// The raw table's column.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Level => "level",
            Dimension::Status => "status",
            Dimension::Method => "method",
            Dimension::Path => "path",
            Dimension::ApiVersion => "api_version",
            Dimension::Format => "format",
            Dimension::Message => "message",
            Dimension::Machine => "machine",
            Dimension::Pattern => "pattern_id",
        }
    }

    /// Whether its values can be unbounded (and are kept to the most frequent per hour).
    pub fn is_bounded(self) -> bool {
        !matches!(
            self,
            Dimension::Level | Dimension::Status | Dimension::Machine | Dimension::Pattern
        )
    }

    fn data_type(self) -> DataType {
        match self {
            Dimension::Status => DataType::Int32,
            Dimension::Pattern => DataType::Int64,
            _ => DataType::Utf8,
        }
    }
}

/// One rollup table: its name and the dimensions it groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// The table's directory under [`ROLLUPS_DIR`].
    pub name: &'static str,
    /// What it groups by, besides the hour and the cluster.
    pub dimensions: &'static [Dimension],
}

/// The rollups kept: one per question the seed analyses and the logs dashboard ask (responses
/// by status, requests by path, api-versions asked for, latency per cluster from any of them,
/// warnings and errors by message). Few dimensions each, so each stays small. The machines of
/// each hour (`hourly_by_machine`) answer per-machine questions, and tell `query` whether a
/// filter on machines leaves out any machine of an hour; the only one that grows with the fleet.
pub const ROLLUPS: [Rollup; 6] = [
    Rollup {
        name: "hourly_by_status",
        dimensions: &[Dimension::Level, Dimension::Status],
    },
    Rollup {
        name: "hourly_by_path",
        dimensions: &[Dimension::Level, Dimension::Path],
    },
    // With the path: api-versions are asked about requests (`path IS NOT NULL`).
    Rollup {
        name: "hourly_by_api_version",
        dimensions: &[Dimension::Level, Dimension::ApiVersion, Dimension::Path],
    },
    Rollup {
        name: "hourly_by_message",
        dimensions: &[Dimension::Level, Dimension::Message],
    },
    Rollup {
        name: "hourly_by_machine",
        dimensions: &[Dimension::Level, Dimension::Machine],
    },
    // Warnings and errors per template: `query patterns` over months.
    Rollup {
        name: patterns::BY_PATTERN,
        dimensions: &[Dimension::Level, Dimension::Pattern],
    },
];

/// The location of the table `name` in [`ROLLUPS_DIR`] of the warm table at `warm`.
pub(crate) fn under_rollups(warm: &Url, name: &str) -> anyhow::Result<Url> {
    let mut root = warm.as_str().to_owned();
    if !root.ends_with('/') {
        root.push('/');
    }
    Ok(Url::parse(&format!("{root}{ROLLUPS_DIR}/{name}/"))?)
}

/// The Delta table at `location`, `None` when none was written there yet.
pub(crate) async fn open_if_built(
    location: &Url,
    what: &str,
) -> anyhow::Result<Option<deltalake::DeltaTable>> {
    use anyhow::Context;
    use deltalake::DeltaTableBuilder;
    if let Ok(dir) = location.to_file_path()
        && !dir.join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let context = || format!("opening {what} at {location}");
    let mut table = DeltaTableBuilder::from_url(location.clone())
        .and_then(|builder| builder.build())
        .with_context(context)?;
    if !table
        .log_store()
        .is_delta_table_location()
        .await
        .with_context(context)?
    {
        return Ok(None);
    }
    table.load().await.with_context(context)?;
    Ok(Some(table))
}

/// Partition columns of every rollup table.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

impl Rollup {
    /// The rollup table's location under the warm table at `warm`.
    pub fn location(&self, warm: &Url) -> anyhow::Result<Url> {
        under_rollups(warm, self.name)
    }

    /// Its table at `warm`'s rollups, `None` when none was built yet.
    pub async fn open(&self, warm: &Url) -> anyhow::Result<Option<deltalake::DeltaTable>> {
        open_if_built(&self.location(warm)?, "the rollup").await
    }

    /// Its Arrow schema: `hour_start`, `cluster`, the dimensions, the measures, `date`, `hour`.
    pub fn schema(&self) -> SchemaRef {
        let timestamp = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new("hour_start", timestamp(), false),
            Field::new("cluster", DataType::Utf8, false),
        ];
        for dimension in self.dimensions {
            fields.push(Field::new(dimension.column(), dimension.data_type(), true));
        }
        fields.push(Field::new("rows", DataType::Int64, false));
        fields.push(Field::new("first_seen", timestamp(), false));
        fields.push(Field::new("last_seen", timestamp(), false));
        for (column, sketch) in [("latency_us", true), ("response_bytes", false)] {
            fields.push(Field::new(
                format!("{column}_count"),
                DataType::Int64,
                false,
            ));
            for measure in ["sum", "min", "max"] {
                fields.push(Field::new(
                    format!("{column}_{measure}"),
                    DataType::Int64,
                    true,
                ));
            }
            if sketch {
                fields.push(Field::new("latency_us_sketch", DataType::Binary, true));
            }
        }
        for name in PARTITION_COLUMNS {
            fields.push(Field::new(name, DataType::Utf8, false));
        }
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod pattern_tests;
#[cfg(test)]
mod tests;
