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
    let mut root = warm.as_str().to_owned();
    if !root.ends_with('/') {
        root.push('/');
    }
    Ok(Url::parse(&format!(
        "{root}{}/{DICTIONARY}/",
        super::ROLLUPS_DIR
    ))?)
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

/// Every cluster's dictionary and the hourly counts its statistics are summed from.
pub(crate) struct Books {
    table: DeltaTable,
    books: BTreeMap<String, Book>,
    hours: BTreeMap<(String, HourKey), BTreeMap<PatternId, Seen>>,
    /// Templates first mined by this run, per cluster.
    pub(crate) new_templates: BTreeMap<String, usize>,
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
        let mut hours: BTreeMap<(String, HourKey), BTreeMap<PatternId, Seen>> = BTreeMap::new();
        let grouped = read(
            by_pattern,
            &[col("pattern_id").is_not_null()],
            vec![col("cluster"), col("date"), col("hour"), col("pattern_id")],
        )
        .await?;
        for batch in grouped {
            let text = |index: usize| {
                arrow::compute::cast(batch.column(index), &DataType::Utf8)
                    .map(|array| array.as_string::<i32>().clone())
            };
            let (clusters, dates, hour_values) = (text(0)?, text(1)?, text(2)?);
            let ids = batch.column(3).as_primitive::<Int64Type>();
            let lines = batch.column(4).as_primitive::<Int64Type>();
            let first = batch.column(5).as_primitive::<TimestampMicrosecondType>();
            let last = batch.column(6).as_primitive::<TimestampMicrosecondType>();
            for row in 0..batch.num_rows() {
                let key = (
                    clusters.value(row).to_owned(),
                    (
                        dates.value(row).to_owned(),
                        hour_values.value(row).to_owned(),
                    ),
                );
                hours.entry(key).or_default().insert(
                    ids.value(row),
                    Seen {
                        lines: lines.value(row),
                        first: first.value(row),
                        last: last.value(row),
                    },
                );
            }
        }
        Ok(Self {
            table,
            books,
            hours,
            new_templates: BTreeMap::new(),
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
            let added = book.dictionary.len() - before;
            if added > 0 {
                *self.new_templates.entry(cluster.to_owned()).or_default() += added;
            }
            let mut seen: BTreeMap<PatternId, Seen> = BTreeMap::new();
            for (&row, id) in rows.iter().zip(given) {
                ids[row] = id;
                let Some(id) = id else { continue };
                let record = &records[row];
                book.examples
                    .entry(id)
                    .or_insert_with(|| record.message.clone());
                let at = record.timestamp.timestamp_micros();
                seen.entry(id)
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
            self.hours.insert((cluster.to_owned(), hour.clone()), seen);
        }
        ids
    }

    /// Writes the dictionaries whose templates or statistics this run changed, one commit per
    /// cluster. Returns the number of templates held in all.
    pub(crate) async fn commit(mut self) -> anyhow::Result<usize> {
        let mut totals: BTreeMap<&str, BTreeMap<PatternId, Seen>> = BTreeMap::new();
        for ((cluster, _), seen) in &self.hours {
            let cluster_totals = totals.entry(cluster.as_str()).or_default();
            for (id, seen) in seen {
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
                && !self.new_templates.contains_key(cluster);
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
        Ok(held)
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
