//! Reading the table whole: every row as records, its data files, a file's bytes. Tests and
//! benchmarks compare these with what agents logged; `query` reads through its own providers.

use crate::location::{open, open_with};
use crate::schema::to_records;
use deltalake::DeltaTable;
use logrecord::LogRecord;
use object_store::ObjectStoreExt;
use std::collections::HashMap;
use url::Url;

/// Every row the table holds now, as records.
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
