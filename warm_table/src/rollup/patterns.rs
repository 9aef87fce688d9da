//! Pattern ids: every WARN or ERROR row, and every INFO row that is not a request event, has the
//! id of its template in the cluster's dictionary. The dictionary is a Delta table beside the
//! rollups (`_rollups/patterns/`, partitioned by cluster): `cluster`, `pattern_id`, `template`
//! as it stands now, `example` (the first line mined into it), and over the hours the rollups
//! keep, `first_seen`, `last_seen` and `lines`. `hourly_by_pattern` counts each hour's rows per
//! level and id.
//!
//! Mined as `collector compact` builds each closed hour (not at ingest: a collector sees its
//! partitions' rows in arrival order, several collectors would race for the next id, and
//! compaction already reads each closed hour once, in one place). An hour's lines are mined in
//! time order (machine and `seq` break ties) with `patterns::Dictionary`: ids are a function
//! of the dictionary and the hour's lines, so rebuilding an hour (a rerun, late rows, a second
//! compactor) gives its lines the same ids. A run commits the dictionaries it changed before
//! the hours that use them: a run killed in between leaves those hours stale, and the next run
//! builds them again from the dictionary, which already covers their lines. Bounded by the
//! miner: at most `Settings::for_logs().max_clusters` templates per cluster; a line beyond has
//! no id (null), and so has every request event.

use super::build::HourKey;
use crate::location::open_or_create_table;
use anyhow::Context;
use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, Utc};
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use logrecord::{Level, LogRecord};
use patterns::{Dictionary, PatternId, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use url::Url;

/// The dictionary table's directory under the rollups.
pub const DICTIONARY: &str = "patterns";

/// The rollup counting each hour's rows per level and pattern id.
pub const BY_PATTERN: &str = "hourly_by_pattern";

/// The daily rollup of [`BY_PATTERN`].
pub const DAILY_BY_PATTERN: &str = "daily_by_pattern";

/// Whether a row gets a pattern id: warnings and errors, and INFO lines that are not request
/// events (those are counted by status, path and api-version instead).
pub fn has_pattern(record: &LogRecord) -> bool {
    match record.level {
        Level::Warn | Level::Error => true,
        Level::Info => record.path.is_none(),
        _ => false,
    }
}

/// The dictionary's location under the warm table at `warm`.
pub fn dictionary_location(warm: &Url) -> anyhow::Result<Url> {
    super::under_rollups(warm, DICTIONARY)
}

/// The dictionary table at `warm`, `None` when no compaction wrote one yet.
pub async fn open_dictionary(warm: &Url) -> anyhow::Result<Option<DeltaTable>> {
    super::open_if_built(&dictionary_location(warm)?, "the pattern dictionary").await
}

/// The dictionary table's schema.
pub fn dictionary_schema() -> SchemaRef {
    let timestamp = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("pattern_id", DataType::Int64, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("example", DataType::Utf8, false),
        Field::new("first_seen", timestamp(), true),
        Field::new("last_seen", timestamp(), true),
        Field::new("lines", DataType::Int64, false),
        Field::new("cluster", DataType::Utf8, false),
    ]))
}

/// One pattern's rows in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    lines: i64,
    first: i64,
    last: i64,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.lines += other.lines;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// One cluster's dictionary as loaded, and what this run changed.
struct Book {
    dictionary: Dictionary,
    examples: BTreeMap<PatternId, String>,
    /// The stored rows' statistics, to tell whether this run changed them.
    stored: BTreeMap<PatternId, Option<Seen>>,
}

/// A template's lines in one hour of one cluster, per id and level.
type HourCounts = BTreeMap<(PatternId, String), Seen>;

/// A pattern new to its cluster in a run: first mined, or not seen for [`NOVELTY_DAYS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPattern {
    /// Its cluster.
    pub cluster: String,
    /// The level of its first line.
    pub level: String,
    /// Its id in the cluster's dictionary.
    pub pattern_id: PatternId,
    /// Its template after the run.
    pub template: String,
    /// Its first line of the run.
    pub example: String,
    /// When that line was logged.
    pub first_seen: DateTime<Utc>,
}

/// What a run did to the pattern ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PatternReport {
    /// Templates the dictionaries hold, after the run.
    pub held: usize,
    /// Patterns new to their cluster, in the order their hours were built.
    pub new: Vec<NewPattern>,
    /// Lines with a pattern id the run added to the rollup, per cluster and level (an hour
    /// built again counts only its late rows).
    pub lines: BTreeMap<(String, String), i64>,
}

/// A pattern not seen in its cluster for this many days is new again (alerted on as new).
pub const NOVELTY_DAYS: i64 = 7;

/// Every cluster's dictionary and the hourly counts its statistics are summed from.
pub(crate) struct Books {
    table: DeltaTable,
    books: BTreeMap<String, Book>,
    hours: BTreeMap<(String, HourKey), HourCounts>,
    /// Per cluster and id, its last line so far (micros).
    last_seen: BTreeMap<(String, PatternId), i64>,
    /// What this run did.
    report: PatternReport,
    /// Templates first mined by this run, per cluster.
    new_templates: BTreeSet<String>,
}

impl Books {
    /// Loads the dictionaries at `warm` (created empty if missing) and `by_pattern`'s counts.
    pub(crate) async fn load(warm: &Url, by_pattern: &DeltaTable) -> anyhow::Result<Self> {
        let location = dictionary_location(warm)?;
        let table = open_or_create_table(
            &location,
            &dictionary_schema(),
            &["cluster"],
            "the pattern dictionary",
        )
        .await?;
        let mut books: BTreeMap<String, Book> = BTreeMap::new();
        for batch in read(&table, &[], vec![]).await? {
            let ids = column::<Int64Type>(&batch, "pattern_id")?;
            let text = |name: &str| -> anyhow::Result<StringArray> {
                Ok(arrow::compute::cast(
                    batch.column_by_name(name).context(name.to_owned())?,
                    &DataType::Utf8,
                )?
                .as_string::<i32>()
                .clone())
            };
            let (clusters, templates, examples) =
                (text("cluster")?, text("template")?, text("example")?);
            let lines = column::<Int64Type>(&batch, "lines")?;
            let first = column::<TimestampMicrosecondType>(&batch, "first_seen")?;
            let last = column::<TimestampMicrosecondType>(&batch, "last_seen")?;
            for row in 0..batch.num_rows() {
                let book = books
                    .entry(clusters.value(row).to_owned())
                    .or_insert_with(Book::new);
                let id = ids.value(row);
                book.dictionary.insert(id, templates.value(row));
                book.examples.insert(id, examples.value(row).to_owned());
                let seen = (!first.is_null(row)).then(|| Seen {
                    lines: lines.value(row),
                    first: first.value(row),
                    last: last.value(row),
                });
                book.stored.insert(id, seen);
            }
        }
        let mut hours: BTreeMap<(String, HourKey), HourCounts> = BTreeMap::new();
        let grouped = read(
            by_pattern,
            &[col("pattern_id").is_not_null()],
            vec![
                col("cluster"),
                col("date"),
                col("hour"),
                col("pattern_id"),
                col("level"),
            ],
        )
        .await?;
        for batch in grouped {
            let text = |index: usize| {
                arrow::compute::cast(batch.column(index), &DataType::Utf8)
                    .map(|array| array.as_string::<i32>().clone())
            };
            let (clusters, dates, hour_values, levels) = (text(0)?, text(1)?, text(2)?, text(4)?);
            let ids = batch.column(3).as_primitive::<Int64Type>();
            let lines = batch.column(5).as_primitive::<Int64Type>();
            let first = batch.column(6).as_primitive::<TimestampMicrosecondType>();
            let last = batch.column(7).as_primitive::<TimestampMicrosecondType>();
            for row in 0..batch.num_rows() {
                let key = (
                    clusters.value(row).to_owned(),
                    (
                        dates.value(row).to_owned(),
                        hour_values.value(row).to_owned(),
                    ),
                );
                hours.entry(key).or_default().insert(
                    (ids.value(row), levels.value(row).to_owned()),
                    Seen {
                        lines: lines.value(row),
                        first: first.value(row),
                        last: last.value(row),
                    },
                );
            }
        }
        let last_seen = books
            .iter()
            .flat_map(|(cluster, book)| {
                book.stored
                    .iter()
                    .filter_map(|(id, seen)| seen.map(|seen| ((cluster.clone(), *id), seen.last)))
            })
            .collect();
        Ok(Self {
            table,
            books,
            hours,
            last_seen,
            report: PatternReport::default(),
            new_templates: BTreeSet::new(),
        })
    }

    /// Each record's pattern id (`None` for rows without one), mining the hour's lines into
    /// their clusters' dictionaries. `records` must be in the hour's mining order.
    pub(crate) fn assign(
        &mut self,
        hour: &HourKey,
        records: &[LogRecord],
    ) -> Vec<Option<PatternId>> {
        let mut ids = vec![None; records.len()];
        let clusters: BTreeSet<&str> = records.iter().map(|r| r.cluster.as_str()).collect();
        for cluster in clusters {
            let rows: Vec<usize> = (0..records.len())
                .filter(|&row| records[row].cluster == cluster && has_pattern(&records[row]))
                .collect();
            let book = self
                .books
                .entry(cluster.to_owned())
                .or_insert_with(Book::new);
            let before = book.dictionary.len();
            let lines: Vec<&str> = rows
                .iter()
                .map(|&row| records[row].message.as_str())
                .collect();
            let given = book.dictionary.assign(&lines);
            if book.dictionary.len() > before {
                self.new_templates.insert(cluster.to_owned());
            }
            let mut seen: HourCounts = BTreeMap::new();
            // Each id's first line of the hour.
            let mut firsts: BTreeMap<PatternId, &LogRecord> = BTreeMap::new();
            for (&row, id) in rows.iter().zip(given) {
                ids[row] = id;
                let Some(id) = id else { continue };
                let record = &records[row];
                book.examples
                    .entry(id)
                    .or_insert_with(|| record.message.clone());
                firsts.entry(id).or_insert(record);
                let at = record.timestamp.timestamp_micros();
                seen.entry((id, record.level.as_str().to_owned()))
                    .or_insert(Seen {
                        lines: 0,
                        first: at,
                        last: at,
                    })
                    .merge(Seen {
                        lines: 1,
                        first: at,
                        last: at,
                    });
            }
            let novelty = chrono::Duration::days(NOVELTY_DAYS)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            for (id, record) in firsts {
                let at = record.timestamp.timestamp_micros();
                let last = seen
                    .iter()
                    .filter(|((seen_id, _), _)| *seen_id == id)
                    .map(|(_, seen)| seen.last)
                    .max()
                    .unwrap_or(at);
                let previous = self.last_seen.get(&(cluster.to_owned(), id)).copied();
                if previous.is_none_or(|previous| previous < at.saturating_sub(novelty)) {
                    self.report.new.push(NewPattern {
                        cluster: cluster.to_owned(),
                        level: record.level.as_str().to_owned(),
                        pattern_id: id,
                        template: String::new(),
                        example: record.message.clone(),
                        first_seen: record.timestamp,
                    });
                }
                self.last_seen.insert(
                    (cluster.to_owned(), id),
                    previous.map_or(last, |p| p.max(last)),
                );
            }
            let key = (cluster.to_owned(), hour.clone());
            let old = self.hours.get(&key);
            for ((_, level), counted) in &seen {
                *self
                    .report
                    .lines
                    .entry((cluster.to_owned(), level.clone()))
                    .or_default() += counted.lines;
            }
            for ((_, level), counted) in old.into_iter().flatten() {
                *self
                    .report
                    .lines
                    .entry((cluster.to_owned(), level.clone()))
                    .or_default() -= counted.lines;
            }
            self.hours.insert(key, seen);
        }
        ids
    }

    /// Writes the dictionaries whose templates or statistics this run changed, one commit per
    /// cluster; what the run did.
    pub(crate) async fn commit(mut self) -> anyhow::Result<PatternReport> {
        let mut totals: BTreeMap<&str, BTreeMap<PatternId, Seen>> = BTreeMap::new();
        for ((cluster, _), seen) in &self.hours {
            let cluster_totals = totals.entry(cluster.as_str()).or_default();
            for ((id, _), seen) in seen {
                cluster_totals
                    .entry(*id)
                    .and_modify(|total| total.merge(*seen))
                    .or_insert(*seen);
            }
        }
        let mut held = 0;
        for (cluster, book) in &self.books {
            held += book.dictionary.len();
            let seen = totals.remove(cluster.as_str()).unwrap_or_default();
            let templates: Vec<(PatternId, String)> = book.dictionary.templates().collect();
            let unchanged = templates.len() == book.stored.len()
                && templates
                    .iter()
                    .all(|(id, _)| book.stored.get(id) == Some(&seen.get(id).copied()))
                && !self.new_templates.contains(cluster);
            if unchanged {
                continue;
            }
            let batch = dictionary_rows(cluster, &templates, &book.examples, &seen)?;
            self.table = self
                .table
                .write(vec![batch])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(col("cluster").eq(lit(cluster.as_str())))
                .with_writer_properties(logrecord::parquet_file::writer_properties()?)
                .await
                .with_context(|| format!("writing the pattern dictionary of cluster {cluster}"))?;
        }
        let mut report = self.report;
        report.held = held;
        report.lines.retain(|_, lines| *lines != 0);
        for new in &mut report.new {
            if let Some(template) = self
                .books
                .get(&new.cluster)
                .and_then(|book| book.dictionary.template(new.pattern_id))
            {
                new.template = template;
            }
        }
        Ok(report)
    }
}

impl Book {
    fn new() -> Self {
        Self {
            dictionary: Dictionary::new(Settings::for_logs()),
            examples: BTreeMap::new(),
            stored: BTreeMap::new(),
        }
    }
}

fn dictionary_rows(
    cluster: &str,
    templates: &[(PatternId, String)],
    examples: &BTreeMap<PatternId, String>,
    seen: &BTreeMap<PatternId, Seen>,
) -> anyhow::Result<RecordBatch> {
    let n = templates.len();
    let timestamps = |pick: fn(&Seen) -> i64| {
        TimestampMicrosecondArray::from(
            templates
                .iter()
                .map(|(id, _)| seen.get(id).map(pick))
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC")
    };
    Ok(RecordBatch::try_new(
        dictionary_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                templates.iter().map(|(id, _)| *id),
            )),
            Arc::new(StringArray::from_iter_values(
                templates.iter().map(|(_, t)| t),
            )),
            Arc::new(StringArray::from_iter_values(templates.iter().map(
                |(id, template)| examples.get(id).unwrap_or(template).as_str(),
            ))),
            Arc::new(timestamps(|seen| seen.first)),
            Arc::new(timestamps(|seen| seen.last)),
            Arc::new(Int64Array::from_iter_values(
                templates
                    .iter()
                    .map(|(id, _)| seen.get(id).map_or(0, |s| s.lines)),
            )),
            Arc::new(StringArray::from(vec![cluster; n])),
        ],
    )?)
}

/// A table's rows matching `filters`; grouped by `group` with the rows' sum, first and last
/// seen when `group` is not empty.
async fn read(
    table: &DeltaTable,
    filters: &[datafusion::prelude::Expr],
    group: Vec<datafusion::prelude::Expr>,
) -> anyhow::Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let mut frame = ctx.read_table(table.table_provider().await?)?;
    for filter in filters {
        frame = frame.filter(filter.clone())?;
    }
    if !group.is_empty() {
        frame = frame.aggregate(
            group,
            vec![
                sum(col("rows")).alias("rows"),
                min(col("first_seen")).alias("first_seen"),
                max(col("last_seen")).alias("last_seen"),
            ],
        )?;
    }
    Ok(frame.collect().await?)
}

fn column<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> anyhow::Result<&'a arrow::array::PrimitiveArray<T>> {
    batch
        .column_by_name(name)
        .and_then(|array| array.as_primitive_opt::<T>())
        .with_context(|| format!("the pattern dictionary's {name} column"))
}
