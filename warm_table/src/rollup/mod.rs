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
//! races another one fails its commit. Each hourly rollup has a daily one (`daily_by_*`,
//! `daily.rs`) made from its hours, partitioned by `date` alone: one file per day, so a
//! statement over 90 days reads 90 small files per rollup, not 2,160. Retention
//! (`collector retain`) trims the rollups with the warm table, to the same horizon (the daily
//! ones keep the day the horizon cuts, rebuilt from its remaining hours at the next compaction).
//!
//! | what | file |
//! |---|---|
//! | records of an hour -> rows of a rollup, bounded dimensions | `aggregate.rs` |
//! | the latency sketch | `sketch.rs` |
//! | which hours are stale, building and replacing them | `build.rs` |
//! | an hourly rollup's days -> its daily rollup | `daily.rs` |
//! | pattern ids and the template dictionary | `patterns.rs` |

mod aggregate;
mod build;
mod daily;
pub mod patterns;
pub mod sketch;

pub use aggregate::OTHER;
pub use build::{BuildReport, build_closed_hours, day_totals, hour_totals, raw_hour_rows};

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

/// How long a rollup row's period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// An hour: the row's start is in `hour_start`; partitioned by `date` and `hour`.
    Hour,
    /// A day (UTC): the row's start is in `day_start`; partitioned by `date`, one file a day.
    Day,
}

impl Resolution {
    /// The column holding the start of a row's period.
    pub fn start_column(self) -> &'static str {
        match self {
            Resolution::Hour => "hour_start",
            Resolution::Day => "day_start",
        }
    }

    /// The table's partition columns.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Resolution::Hour => &PARTITION_COLUMNS,
            Resolution::Day => &PARTITION_COLUMNS[..1],
        }
    }

    /// The period's length.
    pub fn length(self) -> chrono::Duration {
        match self {
            Resolution::Hour => chrono::Duration::hours(1),
            Resolution::Day => chrono::Duration::days(1),
        }
    }
}

/// One rollup table: its name, the dimensions it groups by and its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// The table's directory under [`ROLLUPS_DIR`].
    pub name: &'static str,
    /// What it groups by, besides the period and the cluster.
    pub dimensions: &'static [Dimension],
    /// Hourly or daily.
    pub resolution: Resolution,
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
        resolution: Resolution::Hour,
    },
    Rollup {
        name: "hourly_by_path",
        dimensions: &[Dimension::Level, Dimension::Path],
        resolution: Resolution::Hour,
    },
    // With the path: api-versions are asked about requests (`path IS NOT NULL`).
    Rollup {
        name: "hourly_by_api_version",
        dimensions: &[Dimension::Level, Dimension::ApiVersion, Dimension::Path],
        resolution: Resolution::Hour,
    },
    Rollup {
        name: "hourly_by_message",
        dimensions: &[Dimension::Level, Dimension::Message],
        resolution: Resolution::Hour,
    },
    Rollup {
        name: "hourly_by_machine",
        dimensions: &[Dimension::Level, Dimension::Machine],
        resolution: Resolution::Hour,
    },
    // Warnings and errors per template: `query patterns` over months.
    Rollup {
        name: patterns::BY_PATTERN,
        dimensions: &[Dimension::Level, Dimension::Pattern],
        resolution: Resolution::Hour,
    },
];

/// The daily rollups: each hourly rollup's rows of a day merged (`daily.rs`), so that a
/// statement over months reads one file per day. Same dimensions, bounded again per day.
pub const DAILY: [Rollup; 6] = [
    daily("daily_by_status", ROLLUPS[0].dimensions),
    daily("daily_by_path", ROLLUPS[1].dimensions),
    daily("daily_by_api_version", ROLLUPS[2].dimensions),
    daily("daily_by_message", ROLLUPS[3].dimensions),
    daily("daily_by_machine", ROLLUPS[4].dimensions),
    daily(patterns::DAILY_BY_PATTERN, ROLLUPS[5].dimensions),
];

const fn daily(name: &'static str, dimensions: &'static [Dimension]) -> Rollup {
    Rollup {
        name,
        dimensions,
        resolution: Resolution::Day,
    }
}

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
    let Some(mut table) = unloaded_if_built(location, what).await? else {
        return Ok(None);
    };
    table
        .load()
        .await
        .with_context(|| format!("opening {what} at {location}"))?;
    Ok(Some(table))
}

/// The Delta table at `location`, its log not read yet; `None` when none was written there.
async fn unloaded_if_built(
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
    let table = DeltaTableBuilder::from_url(location.clone())
        .and_then(|builder| builder.build())
        .with_context(context)?;
    let found = table
        .log_store()
        .is_delta_table_location()
        .await
        .with_context(context)?;
    Ok(found.then_some(table))
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

    /// Its table at `warm`'s rollups with its log not read yet (for a reader that loads it
    /// itself), `None` when none was built yet.
    pub async fn unloaded(&self, warm: &Url) -> anyhow::Result<Option<deltalake::DeltaTable>> {
        unloaded_if_built(&self.location(warm)?, "the rollup").await
    }

    /// The daily rollup made from this hourly one; `None` for a daily one.
    pub fn daily(&self) -> Option<Rollup> {
        let index = ROLLUPS.iter().position(|r| r.name == self.name)?;
        Some(DAILY[index])
    }

    /// Its Arrow schema: the period's start (`hour_start` or `day_start`), `cluster`, the
    /// dimensions, the measures, the partition columns (`date`, and `hour` for hourly ones).
    pub fn schema(&self) -> SchemaRef {
        let timestamp = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new(self.resolution.start_column(), timestamp(), false),
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
        for name in self.resolution.partition_columns() {
            fields.push(Field::new(*name, DataType::Utf8, false));
        }
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod daily_tests;
#[cfg(test)]
mod pattern_tests;
#[cfg(test)]
mod tests;
