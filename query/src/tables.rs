//! Registers table `logs` over the sources with their hive partition columns, so that a filter on
//! `date`, `hour` or `cluster` skips whole directories before any file is opened.
//!
//! Two layouts hold the same record schema: the collector's warm store
//! (`date=/hour=/cluster=/*.parquet`) and the agent's cold path (`date=/hour=/*.parquet`, cluster a
//! column). In the warm layout `cluster` comes from the directory (the files' own `cluster` column
//! holds the same value and is not read), so the same SQL works on both.

use crate::visible_files::VisibleFiles;
use anyhow::{Context, bail};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use std::path::Path;
use std::sync::Arc;

/// Where a source's partitions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `date=/hour=/cluster=`: the collector's store.
    Warm,
    /// `date=/hour=`: an agent's hourly Parquet.
    Cold,
}

/// Finds the layout of a local store root.
pub fn layout_of(root: &Path) -> anyhow::Result<Layout> {
    let first = |dir: &Path, prefix: &str| -> Option<std::path::PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        names.sort();
        names.into_iter().next()
    };
    let Some(date) = first(root, "date=") else {
        bail!(
            "{}: no date=YYYY-MM-DD partitions (point --data at a warm store or an agent's parquet directory)",
            root.display()
        );
    };
    let hour = first(&date, "hour=")
        .with_context(|| format!("{}: no hour=HH partitions", date.display()))?;
    Ok(if first(&hour, "cluster=").is_some() {
        Layout::Warm
    } else {
        Layout::Cold
    })
}

/// Registers `logs` over `sources` (local directories of one layout).
pub async fn register(ctx: &SessionContext, sources: &[String]) -> anyhow::Result<Layout> {
    let mut layout = None;
    let mut urls = Vec::new();
    for source in sources {
        if source.contains("://") {
            bail!(
                "{source}: object store and remote agent sources are not supported yet; fetch the files and pass a local directory"
            );
        }
        let path = Path::new(source);
        let found = layout_of(path)?;
        if layout.is_some_and(|l| l != found) {
            bail!(
                "{source}: mixes a warm-store layout with an agent's layout; query them separately"
            );
        }
        layout = Some(found);
        let absolute = std::fs::canonicalize(path).with_context(|| source.clone())?;
        urls.push(ListingTableUrl::parse(format!("{}/", absolute.display()))?);
    }
    let layout = layout.context("no --data source")?;
    let mut partitions = vec![
        ("date".to_owned(), DataType::Utf8),
        ("hour".to_owned(), DataType::Utf8),
    ];
    let record = logrecord::schema();
    let file_schema = match layout {
        Layout::Cold => record.as_ref().clone(),
        Layout::Warm => {
            partitions.push(("cluster".to_owned(), DataType::Utf8));
            Schema::new(
                record
                    .fields()
                    .iter()
                    .filter(|f| f.name() != "cluster")
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        }
    };
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    // Listings go through the compaction-aware view of the file system.
    let local: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new());
    ctx.register_object_store(
        urls[0].object_store().as_ref(),
        Arc::new(VisibleFiles::new(local)),
    );
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(Arc::new(file_schema));
    ctx.register_table("logs", Arc::new(ListingTable::try_new(config)?))?;
    Ok(layout)
}
