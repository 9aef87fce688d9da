//! Registers table `logs` over the sources with their hive partition columns, so that a filter on
//! `date`, `hour` or `cluster` skips whole directories before any file is opened.
//!
//! Two layouts hold the same record schema: the collector's warm store
//! (`date=/hour=/cluster=/*.parquet`) and the agent's cold path (`date=/hour=/*.parquet`, cluster a
//! column). In the warm layout `cluster` comes from the directory (the files' own `cluster` column
//! holds the same value and is not read), so the same SQL works on both.
//!
//! `logs` is a view over the files: `id` and `request_id`, 16 bytes in the files, read as their
//! text (`uuid_text.rs`); every other column as stored. Filters on the partition columns still
//! reach the listing (the view is inlined into each statement's plan).

use crate::sources::Opened;
use anyhow::{Context, bail};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::Column;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SessionContext, col};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use std::sync::Arc;

/// Where a source's partitions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `date=/hour=/cluster=`: the collector's store.
    Warm,
    /// `date=/hour=`: an agent's hourly Parquet.
    Cold,
}

/// The first sub-directory of `prefix` whose name starts with `name=`.
async fn first_partition(
    store: &dyn ObjectStore,
    prefix: &StorePath,
    name: &str,
) -> anyhow::Result<Option<StorePath>> {
    let listing = store.list_with_delimiter(Some(prefix)).await?;
    let mut found: Vec<StorePath> = listing
        .common_prefixes
        .into_iter()
        .filter(|p| {
            p.filename()
                .is_some_and(|f| f.starts_with(&format!("{name}=")))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// Finds the layout of a store root.
pub async fn layout_of(source: &Opened) -> anyhow::Result<Layout> {
    let store = source.store.as_ref();
    let Some(date) = first_partition(store, &source.prefix, "date").await? else {
        bail!(
            "{}: no date=YYYY-MM-DD partitions (point --data at a warm store or an agent's parquet directory)",
            source.table_url
        );
    };
    let hour = first_partition(store, &date, "hour")
        .await?
        .with_context(|| format!("{date}: no hour=HH partitions"))?;
    Ok(
        if first_partition(store, &hour, "cluster").await?.is_some() {
            Layout::Warm
        } else {
            Layout::Cold
        },
    )
}

/// The table's columns in order, the ids through `uuid_text`.
fn ids_as_text(files: ListingTable) -> anyhow::Result<ViewTable> {
    let schema = files.schema();
    let to_text = crate::uuid_text::udf();
    let columns = schema.fields().iter().map(|field| {
        let column = col(Column::from_name(field.name()));
        if field.data_type() == &logrecord::UUID {
            to_text.call(vec![column]).alias(field.name())
        } else {
            column
        }
    });
    let plan = LogicalPlanBuilder::scan("logs", provider_as_source(Arc::new(files)), None)?
        .project(columns)?
        .build()?;
    Ok(ViewTable::new(plan, None))
}

/// Registers `logs` over `sources` (all of one layout).
pub async fn register(ctx: &SessionContext, sources: Vec<Opened>) -> anyhow::Result<Layout> {
    let mut layout = None;
    let mut urls = Vec::new();
    for source in sources {
        let found = layout_of(&source).await?;
        if layout.is_some_and(|l| l != found) {
            bail!(
                "{}: mixes a warm-store layout with an agent's layout; query them separately",
                source.table_url
            );
        }
        layout = Some(found);
        // Listings go through the compaction-aware view of the store.
        ctx.register_object_store(source.table_url.object_store().as_ref(), source.store);
        urls.push(source.table_url);
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
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(Arc::new(file_schema));
    let files = ListingTable::try_new(config)?;
    ctx.register_table("logs", Arc::new(ids_as_text(files)?))?;
    Ok(layout)
}
