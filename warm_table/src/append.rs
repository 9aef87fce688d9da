//! One append = one Delta commit: the data files of every partition directory, with the
//! progress (`txn`) they carry, after a fence check. Dead letters are written under
//! `_dead_letters/` (a `_` path is never data to Delta).

use crate::location::open_or_create;
use crate::partition_files::{PartitionFile, partition_files};
use crate::progress::stored_version;
use crate::schema::PARTITION_COLUMNS;
use crate::write_error::WriteError;
use delta_kernel::expressions::Scalar;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use logrecord::LogRecord;
use object_store::ObjectStoreExt;
use url::Url;

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
) -> Result<Appended, WriteError> {
    let properties = logrecord::parquet_file::writer_properties()
        .map_err(|e| WriteError::new("Parquet settings", e))?;
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(|e| WriteError::new("preparing the writer", e))?
        .with_writer_properties(properties);
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
            .map_err(|e| WriteError::new("writing a data file", e))?;
    }
    let adds = writer
        .flush()
        .await
        .map_err(|e| WriteError::new("finishing the data files", e))?;
    appended.files = adds.len();
    appended.bytes = adds.iter().map(|a| a.size as u64).sum();
    before_commit.await;

    table
        .update_incremental(None)
        .await
        .map_err(|e| WriteError::new("reading the table's log", e))?;
    for (app_id, version) in expected {
        let stored = stored_version(table, app_id)
            .await
            .map_err(|e| WriteError::new("reading the table's progress", e))?;
        if stored != *version {
            return Err(WriteError::Fenced(format!(
                "{app_id} is at {stored:?} in the table, this writer expected {version:?}"
            )));
        }
    }
    let snapshot = table
        .snapshot()
        .map_err(|e| WriteError::new("reading the table's snapshot", e))?;
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
        }) => Err(WriteError::Fenced(conflict.to_string())),
        Err(error) => Err(WriteError::new("committing to the table", error)),
    }
}

/// Appends `records` in one commit without progress, creating the table if there is none: how
/// fixtures and benchmarks fill a table the way the collector does.
pub async fn write_records(url: &Url, records: &mut [LogRecord]) -> anyhow::Result<Appended> {
    let mut table = open_or_create(url).await?;
    let files = partition_files(records)?;
    Ok(append(&mut table, files, Vec::new(), &[], async {}).await?)
}

/// Writes a dead-letter file under `_dead_letters/` of the table's location.
pub async fn put_dead_letters(
    table: &DeltaTable,
    name: &str,
    lines: Vec<u8>,
) -> Result<(), WriteError> {
    let path = object_store::path::Path::from(format!("_dead_letters/{name}.jsonl"));
    table
        .object_store()
        .put(&path, lines.into())
        .await
        .map_err(|e| WriteError::new("writing a dead-letter file", e))?;
    Ok(())
}
