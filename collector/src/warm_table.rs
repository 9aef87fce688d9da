//! The warm store is one Delta Lake table (delta-rs): the table's log is the only record of what
//! it holds, so every engine that reads Delta (Spark, DuckDB, Polars, `query`) sees exactly the
//! committed rows, and a commit is all or nothing.
//!
//! - Schema: the log record's columns in Delta's types (ids `binary`, unsigned counts as signed
//!   `long`/`integer`, `timestamp` in UTC microseconds), plus `date` (`YYYY-MM-DD`) and `hour`
//!   (`HH`), partitioned by `date`, `hour`, `cluster`: data files sit under
//!   `date=/hour=/cluster=/part-*.parquet` and a cluster's hour is skipped or read as a whole.
//! - Progress lives in the table's commits as application transactions (`txn`, the pattern of
//!   kafka-delta-ingest): per Kafka partition, `appId = <group>-<topic>-<partition>` with the last
//!   offset stored as version; per machine, `appId = <group>-<topic>-machine-<machine>` with the
//!   highest `seq` stored. A commit carries them atomically with its files.
//! - Dead letters are written under `_dead_letters/` (a `_` path is never data to Delta).

use anyhow::{Context, bail};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use delta_kernel::expressions::Scalar;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use logrecord::LogRecord;
use object_store::ObjectStoreExt;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use url::Url;

/// The table's partition columns, in directory order.
pub const PARTITION_COLUMNS: [&str; 3] = ["date", "hour", "cluster"];

/// Commits between checkpoints: a reader replays at most this many JSON commits after the last
/// checkpoint (Parquet). At one commit per collector per flush interval (2 s), 4 collectors make
/// a checkpoint every 50 s.
pub const CHECKPOINT_INTERVAL: &str = "100";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = logrecord::schema()
        .fields()
        .iter()
        .map(|field| {
            Field::new(
                field.name(),
                delta_type(field.data_type()),
                field.is_nullable(),
            )
        })
        .collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    fields.push(Field::new("hour", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
});

/// Delta has no unsigned or fixed-size binary types: the record's are stored in the nearest
/// Delta type that holds every value (`seq` and the counts stay below 2^63, checked on intake).
fn delta_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::FixedSizeBinary(_) => DataType::Binary,
        DataType::UInt64 => DataType::Int64,
        DataType::UInt16 => DataType::Int32,
        other => other.clone(),
    }
}

/// The table's Arrow schema (partition columns included).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Where the table is: a local directory or `s3://bucket/prefix`, as given to `--out`.
pub fn location(out: &str) -> anyhow::Result<Url> {
    if out.contains("://") {
        let url = Url::parse(out).with_context(|| format!("{out}: not a URL"))?;
        if url.scheme() != "s3" {
            bail!("{out}: the warm store is a local directory or s3://bucket/prefix");
        }
        return Ok(url);
    }
    // Not created here: only a collector's first start creates the table (`open_or_create`), so
    // a mistyped path given to a reader or a maintenance command is an error, not a new directory.
    let absolute = std::path::absolute(out).with_context(|| format!("resolving {out}"))?;
    Url::from_directory_path(&absolute)
        .map_err(|()| anyhow::anyhow!("{}: not an absolute directory", absolute.display()))
}

/// Makes `s3://` URLs openable (object_store's S3 client, configured from `AWS_*` variables;
/// commits use its conditional put, so concurrent writers never overwrite a log entry).
pub fn register_storage() {
    deltalake::aws::register_handlers(None);
}

/// Opens the table, creating it if the location holds none yet (two collectors starting at once:
/// one creates it, the other finds it).
pub async fn open_or_create(url: &Url) -> anyhow::Result<DeltaTable> {
    if let Ok(dir) = url.to_file_path() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for _ in 0..3 {
        let table = DeltaTable::try_from_url(url.clone())
            .await
            .with_context(|| format!("opening the Delta table at {url}"))?;
        if table.version().is_some() {
            return Ok(table);
        }
        let fields: deltalake::kernel::StructType =
            deltalake::kernel::engine::arrow_conversion::TryIntoKernel::try_into_kernel(
                schema().as_ref(),
            )?;
        let created = table
            .create()
            .with_columns(fields.fields().cloned())
            .with_partition_columns(PARTITION_COLUMNS)
            .with_save_mode(SaveMode::Ignore)
            .with_configuration_property(
                TableProperty::CheckpointInterval,
                Some(CHECKPOINT_INTERVAL),
            )
            // Checkpoints also carry each file's statistics and partition values as typed
            // columns (`stats_parsed`, `partitionValues_parsed`, as Spark writes by default), so a
            // reader skips files without parsing every file's JSON statistics (BENCHMARKS.md).
            // The JSON stays for readers that want it.
            .with_configuration_property(TableProperty::CheckpointWriteStatsAsStruct, Some("true"))
            .await;
        match created {
            Ok(table) => {
                tracing::info!(%url, "created the warm store's Delta table");
                return Ok(table);
            }
            Err(error) => {
                tracing::warn!(%error, "creating the table raced another writer; loading it")
            }
        }
    }
    bail!("{url}: cannot create or load the Delta table")
}

/// Writes a checkpoint of the table's newest version now (commits write one every
/// `CHECKPOINT_INTERVAL`), and returns that version.
pub async fn checkpoint(url: &Url) -> anyhow::Result<u64> {
    let table = open(url).await?;
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .with_context(|| format!("writing a checkpoint of {url}"))?;
    table.version().context("a table without a version")
}

/// Opens an existing table (maintenance, readers).
pub async fn open(url: &Url) -> anyhow::Result<DeltaTable> {
    open_with(url, HashMap::new()).await
}

/// Opens an existing table with storage options (e.g. `aws_endpoint`) besides the environment's.
pub async fn open_with(url: &Url, options: HashMap<String, String>) -> anyhow::Result<DeltaTable> {
    let table = DeltaTable::try_from_url_with_storage_options(url.clone(), options)
        .await
        .with_context(|| format!("opening the Delta table at {url}"))?;
    if table.version().is_none() {
        bail!("{url}: no Delta table here (a collector creates it on its first start)");
    }
    Ok(table)
}

/// The application id of a Kafka partition's progress.
pub fn partition_app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}-{topic}-{partition}")
}

/// The application id of a machine's highest stored `seq`.
pub fn machine_app_id(group: &str, topic: &str, machine: &str) -> String {
    format!("{group}-{topic}-machine-{machine}")
}

/// The version stored for `app_id` in the table's current snapshot.
pub async fn stored_version(table: &DeltaTable, app_id: &str) -> anyhow::Result<Option<i64>> {
    let snapshot = table.snapshot().context("the table has no snapshot")?;
    Ok(snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await?)
}

/// Records -> one batch in the table's file schema (partition columns left out: `cluster` is
/// dropped by the writer, `date` and `hour` come from the partition values).
pub fn to_file_batch(records: &[LogRecord]) -> anyhow::Result<RecordBatch> {
    let batch = logrecord::to_record_batch(records)?;
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| cast(column, &delta_type(column.data_type())))
        .collect::<Result<_, _>>()?;
    let fields: Vec<Field> = SCHEMA.fields()[..columns.len()]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Rows read from the table (any column order, partition columns as text or dictionaries) ->
/// records.
pub fn to_records(batch: &RecordBatch) -> anyhow::Result<Vec<LogRecord>> {
    let record_schema = logrecord::schema();
    let columns: Vec<ArrayRef> = record_schema
        .fields()
        .iter()
        .map(|field| {
            let mut column = batch
                .column_by_name(field.name())
                .with_context(|| format!("no column {}", field.name()))?
                .clone();
            // Readers hand binaries over as views, which cast to fixed sizes only via `Binary`.
            if column.data_type() == &DataType::BinaryView {
                column = cast(&column, &DataType::Binary)?;
            }
            Ok(cast(&column, field.data_type())?)
        })
        .collect::<anyhow::Result<_>>()?;
    let batch = RecordBatch::try_new(record_schema, columns)?;
    Ok(logrecord::from_record_batch(&batch)?)
}

/// Files to add under one partition directory.
#[derive(Debug)]
pub struct PartitionFile {
    /// The partition's `date` value, `YYYY-MM-DD`.
    pub date: String,
    /// The partition's `hour` value, `HH`.
    pub hour: String,
    /// The partition's `cluster` value.
    pub cluster: String,
    /// The rows, in the table's file schema.
    pub batch: RecordBatch,
}

/// Why an append was not committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer stored progress for a partition this append expected to own: the append is
    /// dropped (its rows are the other writer's to store).
    #[error("fenced: {0}")]
    Fenced(String),
    #[error(transparent)]
    /// Any other failure (retried by the writer unless permanent).
    Failed(#[from] anyhow::Error),
}

/// What a committed append added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The table version the commit created.
    pub version: i64,
    /// Rows appended.
    pub rows: usize,
    /// Data files added.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Times the commit lost a race to another writer and was retried on the newer version.
    pub retries: u64,
    /// Whether a checkpoint was written after the commit.
    pub checkpoint: bool,
}

/// Writes `files` and commits them in one Delta commit with `transactions`, after checking that
/// the table still holds `expected` for every partition app id (a writer that lost a partition
/// finds another writer's progress there). The check is made on the snapshot the commit is based
/// on; delta-rs's conflict checker fails the commit if a commit after that snapshot carries the
/// same app id, so no two writers ever both commit progress past the same version.
pub async fn append(
    table: &mut DeltaTable,
    files: Vec<PartitionFile>,
    transactions: Vec<Transaction>,
    expected: &[(String, Option<i64>)],
    before_commit: impl std::future::Future<Output = ()>,
) -> Result<Appended, AppendError> {
    let mut writer = RecordBatchWriter::for_table(table)
        .context("preparing the writer")?
        .with_writer_properties(
            logrecord::parquet_file::writer_properties().context("Parquet settings")?,
        );
    let mut appended = Appended::default();
    for file in files {
        appended.rows += file.batch.num_rows();
        let values = indexmap::IndexMap::from([
            ("date".to_owned(), Scalar::String(file.date)),
            ("hour".to_owned(), Scalar::String(file.hour)),
            ("cluster".to_owned(), Scalar::String(file.cluster)),
        ]);
        writer
            .write_partition(file.batch, &values, deltalake::writer::WriteMode::Default)
            .await
            .context("writing a data file")?;
    }
    let adds = writer.flush().await.context("finishing the data files")?;
    appended.files = adds.len();
    appended.bytes = adds.iter().map(|a| a.size as u64).sum();
    before_commit.await;

    table
        .update_incremental(None)
        .await
        .context("reading the table's log")?;
    for (app_id, version) in expected {
        let stored = stored_version(table, app_id).await?;
        if stored != *version {
            return Err(AppendError::Fenced(format!(
                "{app_id} is at {stored:?} in the table, this writer expected {version:?}"
            )));
        }
    }
    let snapshot = table.snapshot().context("the table has no snapshot")?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(PARTITION_COLUMNS.map(String::from).to_vec()),
        predicate: None,
    };
    let committed = CommitBuilder::from(
        CommitProperties::default().with_application_transactions(transactions),
    )
    .with_actions(adds.into_iter().map(Action::Add).collect())
    .build(Some(snapshot), table.log_store(), operation)
    .await;
    match committed {
        Ok(finalized) => {
            appended.version = finalized.version() as i64;
            appended.retries = finalized.metrics.num_retries;
            appended.checkpoint = finalized.metrics.new_checkpoint_created;
            Ok(appended)
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(conflict),
        }) => Err(AppendError::Fenced(conflict.to_string())),
        Err(error) => Err(AppendError::Failed(
            anyhow::Error::new(error).context("committing to the table"),
        )),
    }
}

/// Writes a dead-letter file under `_dead_letters/` of the table's location.
pub async fn put_dead_letters(
    table: &DeltaTable,
    name: &str,
    lines: Vec<u8>,
) -> anyhow::Result<()> {
    let path = object_store::path::Path::from(format!("_dead_letters/{name}.jsonl"));
    table
        .object_store()
        .put(&path, lines.into())
        .await
        .with_context(|| format!("writing {path}"))?;
    Ok(())
}

/// Every row the table holds now, as records (tests and `warm_verify` compare them with the
/// agents' logs).
pub async fn read_records(url: &Url) -> anyhow::Result<Vec<LogRecord>> {
    read_records_with(url, HashMap::new()).await
}

/// [`read_records`] with storage options.
pub async fn read_records_with(
    url: &Url,
    options: HashMap<String, String>,
) -> anyhow::Result<Vec<LogRecord>> {
    let table = open_with(url, options).await?;
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let batches = ctx.read_table(provider)?.collect().await?;
    let mut records = Vec::new();
    for batch in &batches {
        records.extend(to_records(batch)?);
    }
    Ok(records)
}

/// The data files of the table's current version, relative to its root.
pub async fn data_files(url: &Url) -> anyhow::Result<Vec<String>> {
    loaded_data_files(&open(url).await?).await
}

/// The data files of the version `table` has loaded, relative to its root: a watcher keeps one
/// table and calls `update_incremental` (reading only the new commits) instead of [`data_files`]
/// (the whole log again).
pub async fn loaded_data_files(table: &DeltaTable) -> anyhow::Result<Vec<String>> {
    use futures::TryStreamExt;
    let snapshot = table.snapshot()?.snapshot().clone();
    let mut views = snapshot.file_views(table.log_store().as_ref(), None);
    let mut files = Vec::new();
    while let Some(view) = views.try_next().await? {
        files.push(
            percent_encoding::percent_decode_str(&view.path())
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    files.sort();
    Ok(files)
}

/// The bytes of one data file of an open table (a path from [`loaded_data_files`]).
pub async fn read_file(table: &DeltaTable, relative: &str) -> anyhow::Result<bytes::Bytes> {
    let path = object_store::path::Path::from(relative);
    Ok(table.object_store().get(&path).await?.bytes().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_tables_types() {
        let line = r#"{"seq":9223372036854775807,"id":"01930000-0000-7000-8000-000000000001","timestamp":"2026-01-01T00:00:00.123456Z","level":"INFO","target":"imds::request","message":"m","cluster":"east","machine":"host-1","request_id":"4fa4fc1c-0000-4000-8000-000000000002","status":65535,"latency_us":12,"response_bytes":9223372036854775807}"#;
        let records = vec![LogRecord::from_json_line(line).unwrap_or_else(|e| panic!("{e}"))];
        let batch = to_file_batch(&records).unwrap_or_else(|e| panic!("{e}"));
        let types: Vec<&DataType> = ["id", "seq", "status", "latency_us"]
            .iter()
            .map(|name| {
                batch
                    .schema_ref()
                    .field_with_name(name)
                    .map(|f| f.data_type())
            })
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            types,
            [
                &DataType::Binary,
                &DataType::Int64,
                &DataType::Int32,
                &DataType::Int64
            ]
        );
        assert_eq!(
            to_records(&batch).unwrap_or_else(|e| panic!("{e}")),
            records
        );
        // The table adds date and hour after the record's columns.
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["date", "hour"]);
    }
}
