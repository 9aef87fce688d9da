//! Registers table `logs` over the sources with their partition columns, so that a filter on
//! `date`, `hour` or `cluster` skips whole partitions before any file is opened.
//!
//! Three layouts hold the same record schema:
//! - the collector's warm store, a Delta Lake table (`_delta_log/`, data under
//!   `date=/hour=/cluster=`): read through delta-rs's table provider, which takes the files of
//!   the table's current version from its log (no directory listing) and skips files by their
//!   partition values and min/max statistics; each statement reads the newest version
//!   (`latest_delta.rs`), so a long-running server sees what the collector committed since;
//! - the agent's cold path (`date=/hour=/*.parquet`, cluster a column): a hive listing;
//! - plain hive Parquet laid out like the warm store (`date=/hour=/cluster=`, no Delta log): a
//!   hive listing, `cluster` from the directory.
//!
//! `logs` is a view with the same columns on every layout: `id` and `request_id`, 16 bytes in the
//! files, read as their text (`uuid_text.rs`); every other column as stored (the Delta table's
//! counts are signed, its text may come as string views: SQL answers the same). Nothing else is
//! cast, so filters reach the scan (the view is inlined into each statement's plan): partition
//! pruning and file skipping by statistics.

pub mod damaged;
mod file_skipping;
pub mod latest_delta;
pub(crate) mod uuid_text;
pub(crate) mod visible_files;

use crate::source::Opened;
use crate::table::latest_delta::{Files, LatestDelta};
use anyhow::{Context, bail};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::Column;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SessionContext, cast, col};
use logrecord::layout::HOUR_PARTITIONS;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use std::sync::Arc;

/// The one table statements read.
pub(crate) const TABLE: &str = "logs";

/// Where a source's partitions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The collector's Delta table.
    Delta,
    /// `date=/hour=/cluster=` without a Delta log.
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
pub(crate) async fn layout_of(source: &Opened) -> anyhow::Result<Layout> {
    let store = source.store.as_ref();
    let root = store.list_with_delimiter(Some(&source.prefix)).await?;
    if root
        .common_prefixes
        .iter()
        .any(|p| p.filename() == Some("_delta_log"))
    {
        return Ok(Layout::Delta);
    }
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

/// The view `logs` over `files`: the record's columns in order (ids through `uuid_text`, the
/// others as stored), then the partition columns.
pub(crate) fn logs_view(
    files: Arc<dyn TableProvider>,
    partitions: &[&str],
) -> anyhow::Result<ViewTable> {
    let schema = files.schema();
    let to_text = crate::table::uuid_text::udf();
    let record = logrecord::schema();
    let mut columns = Vec::new();
    let partition_field = |name: &str| partitions.contains(&name);
    for field in record.fields() {
        if partition_field(field.name()) {
            continue;
        }
        let Ok(stored) = schema.field_with_name(field.name()) else {
            bail!("the store has no column {}", field.name());
        };
        let column = col(Column::from_name(field.name()));
        columns.push(if field.data_type() == &logrecord::UUID {
            // The Delta provider hands binaries over as views, which cast to the 16-byte type
            // `uuid_text` takes only through `Binary`.
            let bytes = match stored.data_type() {
                DataType::FixedSizeBinary(_) => column,
                DataType::BinaryView => {
                    cast(cast(column, DataType::Binary), field.data_type().clone())
                }
                _ => cast(column, field.data_type().clone()),
            };
            to_text.call(vec![bytes]).alias(field.name())
        } else {
            // As stored: a cast here would hide the column from filter pushdown (partition
            // pruning, statistics), and text views or signed counts answer SQL the same.
            column.alias(field.name())
        });
    }
    for name in partitions {
        schema.field_with_name(name)?;
        columns.push(col(Column::from_name(*name)).alias(*name));
    }
    let plan = LogicalPlanBuilder::scan(TABLE, provider_as_source(files), None)?
        .project(columns)?
        .build()?;
    Ok(ViewTable::new(plan, None))
}

/// The partition columns of the warm store (hive directories or Delta table), in order.
pub(crate) const WARM_PARTITIONS: [&str; 3] = warm_table::PARTITION_COLUMNS;

/// The Delta tables at `sources` (all of them, as one).
async fn delta_tables(
    ctx: &SessionContext,
    sources: Vec<Opened>,
    files: Files,
) -> anyhow::Result<Arc<dyn TableProvider>> {
    let mut providers: Vec<Arc<dyn TableProvider>> = Vec::new();
    for source in sources {
        let url = url::Url::parse(source.table_url.as_str())?;
        // Not loaded: `LatestDelta` reads the snapshot as `files` says.
        let table = deltalake::DeltaTableBuilder::from_url(url.clone())?.build()?;
        // Data files are read through the checked, counted store registered for the URL;
        // delta-rs keeps it (it only registers one where none is).
        ctx.register_object_store(source.table_url.object_store().as_ref(), source.store);
        table.update_datafusion_session(&ctx.state())?;
        let latest = LatestDelta::open(table, &WARM_PARTITIONS, files)
            .await
            .with_context(|| format!("{url}: opening the Delta table"))?;
        providers.push(Arc::new(latest));
    }
    if providers.len() == 1 {
        return Ok(providers.remove(0));
    }
    let mut plan =
        LogicalPlanBuilder::scan("store0", provider_as_source(providers[0].clone()), None)?;
    for (i, provider) in providers.iter().enumerate().skip(1) {
        let other = LogicalPlanBuilder::scan(
            format!("store{i}"),
            provider_as_source(provider.clone()),
            None,
        )?
        .build()?;
        plan = plan.union(other)?;
    }
    Ok(Arc::new(ViewTable::new(plan.build()?, None)))
}

/// The prefix of the tables that expose the warm store's rollups, e.g. `logs_hourly_by_status`.
pub(crate) const ROLLUP_TABLE_PREFIX: &str = "logs_";

/// Registers each rollup the collector's compaction built beside the Delta table at `warm`
/// (`warm_table::rollup`) as `logs_<name>`, read at its newest version as `logs` is.
async fn register_rollups(
    ctx: &SessionContext,
    warm: &url::Url,
    files: Files,
) -> anyhow::Result<()> {
    let mut found = Vec::new();
    let rollups = warm_table::rollup::ROLLUPS.iter();
    for rollup in rollups.chain(&warm_table::rollup::DAILY) {
        let Some(table) = rollup.unloaded(warm).await? else {
            continue;
        };
        found.push(*rollup);
        let location = rollup.location(warm)?;
        let provider = LatestDelta::open(table, rollup.resolution.partition_columns(), files)
            .await
            .with_context(|| format!("{location}: opening the rollup"))?;
        ctx.register_table(
            format!("{ROLLUP_TABLE_PREFIX}{}", rollup.name),
            Arc::new(provider),
        )?;
    }
    if !found.is_empty() {
        let source = crate::rollups::RollupSource {
            warm: warm.clone(),
            rollups: found,
        };
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(source));
    }
    Ok(())
}

/// The warm store's Parquet files' own columns: the log record's, less the partition columns
/// (hive directories and the Delta log keep `cluster`, not the files).
pub(crate) fn warm_file_schema() -> SchemaRef {
    let record = logrecord::schema();
    Arc::new(Schema::new(
        record
            .fields()
            .iter()
            .filter(|f| !WARM_PARTITIONS.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// Registers `logs` over `sources` (all of one layout); a Delta table's files held as `files`
/// says (per scan for one statement, kept for a session).
pub(crate) async fn register(
    ctx: &SessionContext,
    sources: Vec<Opened>,
    files: Files,
) -> anyhow::Result<Layout> {
    ctx.register_udtf(
        crate::patterns_table::NAME,
        Arc::new(crate::patterns_table::LogPatterns),
    );
    let mut layout = None;
    let mut urls = Vec::new();
    let mut delta_sources = Vec::new();
    for source in sources {
        let found = layout_of(&source).await?;
        if layout.is_some_and(|l| l != found) {
            bail!(
                "{}: mixes store layouts (Delta table, warm hive, agent hive); query them separately",
                source.table_url
            );
        }
        layout = Some(found);
        if found == Layout::Delta {
            delta_sources.push(source);
            continue;
        }
        // Listings go through the checked view of the store.
        ctx.register_object_store(source.table_url.object_store().as_ref(), source.store);
        urls.push(source.table_url);
    }
    let layout = layout.context("no --data source")?;
    if layout == Layout::Delta {
        if let [source] = delta_sources.as_slice() {
            let warm = url::Url::parse(source.table_url.as_str())?;
            register_rollups(ctx, &warm, files).await?;
            crate::pattern_ids::register(ctx, &warm, files).await?;
        }
        let table = delta_tables(ctx, delta_sources, files).await?;
        ctx.register_table(TABLE, Arc::new(logs_view(table, &WARM_PARTITIONS)?))?;
        return Ok(layout);
    }
    let (partitions, file_schema): (&[&str], _) = match layout {
        Layout::Cold => (&HOUR_PARTITIONS, logrecord::schema()),
        Layout::Warm | Layout::Delta => (&WARM_PARTITIONS, warm_file_schema()),
    };
    let partition_columns = partitions
        .iter()
        .map(|name| (name.to_string(), DataType::Utf8))
        .collect();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partition_columns);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(file_schema);
    let files = ListingTable::try_new(config)?;
    ctx.register_table(TABLE, Arc::new(logs_view(Arc::new(files), partitions)?))?;
    Ok(layout)
}
