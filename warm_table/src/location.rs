//! Where the table is (a local directory or `s3://bucket/prefix`), opening or creating it, and
//! checkpoints.

use crate::schema::{PARTITION_COLUMNS, schema};
use anyhow::{Context, bail};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, TableProperty};
use std::collections::HashMap;
use url::Url;

/// Commits between checkpoints: a reader replays at most this many JSON commits after the last
/// checkpoint (Parquet). At one commit per collector per flush interval (2 s), 4 collectors make
/// a checkpoint every 50 s.
pub const CHECKPOINT_INTERVAL: &str = "100";

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
    open_or_create_table(
        url,
        &schema(),
        &PARTITION_COLUMNS,
        "the warm store's Delta table",
    )
    .await
}

/// Opens the Delta table at `url`, creating it with `schema` and `partition_columns` (and the
/// project's checkpoint settings) if the location holds none yet; `what` names it in the log.
pub(crate) async fn open_or_create_table(
    url: &Url,
    schema: &arrow::datatypes::Schema,
    partition_columns: &[&str],
    what: &str,
) -> anyhow::Result<DeltaTable> {
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
            deltalake::kernel::engine::arrow_conversion::TryIntoKernel::try_into_kernel(schema)?;
        let created = table
            .create()
            .with_columns(fields.fields().cloned())
            .with_partition_columns(partition_columns.iter().copied())
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
                tracing::info!(%url, "created {what}");
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
