//! The warm store's table on the cluster as of each statement. A client session (the CLI's prompt,
//! or `query serve` running for weeks) must not answer from the table version it started with:
//! before each statement is sent to the cluster its listing is brought up to the table's newest
//! version (an incremental read of the Delta log: only the commits made since), and the plan
//! carries that listing in place of this table (`planner.rs`). A statement therefore sees every
//! commit made before it started, and one version from start to end, whichever protocol
//! planned it: a statement prepared long ago is listed when it runs, not when it was prepared.

use super::file_listing::{FileListing, FileListingTable};
use super::partition_pruning::partition_filter;
use anyhow::Context;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Result, internal_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use std::sync::Arc;

/// The listing of the newest version of the warm store's Delta table.
#[derive(Debug)]
pub(crate) struct LatestListing {
    url: url::Url,
    schema: SchemaRef,
    /// The table and the listing of the version it has loaded, locked while the log is read so
    /// that one statement refreshes at a time.
    loaded: tokio::sync::Mutex<(DeltaTable, Arc<FileListing>)>,
}

impl LatestListing {
    /// The listing of the newest version of the Delta table at `url`.
    pub(crate) async fn open(url: url::Url) -> anyhow::Result<LatestListing> {
        let table = DeltaTable::try_from_url(url.clone())
            .await
            .with_context(|| format!("{url}: opening the Delta table"))?;
        let listing = FileListing::of_loaded(&table, &url).await?;
        let schema = FileListingTable::new(listing.clone()).schema();
        Ok(LatestListing {
            url,
            schema,
            loaded: tokio::sync::Mutex::new((table, Arc::new(listing))),
        })
    }

    /// Reads the commits made since the version loaded; the newest version's listing.
    pub(crate) async fn refresh(&self) -> anyhow::Result<Arc<FileListing>> {
        let mut loaded = self.loaded.lock().await;
        let (table, listing) = &mut *loaded;
        let before = table.version();
        table
            .update_incremental(None)
            .await
            .with_context(|| format!("{}: reading the Delta log", self.url))?;
        if table.version() != before {
            *listing = Arc::new(FileListing::of_loaded(table, &self.url).await?);
        }
        Ok(listing.clone())
    }
}

#[async_trait]
impl TableProvider for LatestListing {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on `date`, `hour` and `cluster` reach the scan, where they prune the listing sent
    /// to the cluster (`partition_pruning.rs`); they are still applied to the rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if partition_filter(filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    /// Never planned in the client: the session's planner sends every plan that reads this
    /// table to the cluster, with a listing in its place (`planner.rs`).
    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        internal_err!("the warm store on a cluster is read by the cluster, not in the client")
    }
}
