//! The warm store's table on the cluster as of each statement. A client session (the CLI's prompt,
//! or `query serve` running for weeks) must not answer from the table version it started with:
//! before each statement is sent to the cluster its listing is brought up to the table's newest
//! version (an incremental read of the Delta log: only the commits made since), and the plan
//! carries the listing current when it is sent (`codec.rs`). A statement therefore sees every
//! commit made before it started, and one version from start to end, whichever protocol
//! planned it: a statement prepared long ago is listed when it runs, not when it was prepared.

use super::file_listing::{FileListing, FileListingTable};
use anyhow::Context;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use std::sync::{Arc, Mutex};

/// The listing of the newest version of the warm store's Delta table.
#[derive(Debug)]
pub(crate) struct LatestListing {
    url: url::Url,
    schema: SchemaRef,
    /// The table, locked while its log is read so that one statement refreshes at a time.
    table: tokio::sync::Mutex<DeltaTable>,
    /// The listing of the version loaded last, for the synchronous calls of encoding a plan.
    current: Mutex<Arc<FileListing>>,
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
            table: tokio::sync::Mutex::new(table),
            current: Mutex::new(Arc::new(listing)),
        })
    }

    /// The listing loaded last.
    pub(crate) fn current(&self) -> Arc<FileListing> {
        // A poisoned lock still holds a whole listing: the writer only swaps an Arc.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the commits made since the version loaded and lists the newest version's files.
    pub(crate) async fn refresh(&self) -> anyhow::Result<Arc<FileListing>> {
        let mut table = self.table.lock().await;
        let before = table.version();
        table
            .update_incremental(None)
            .await
            .with_context(|| format!("{}: reading the Delta log", self.url))?;
        if table.version() == before {
            return Ok(self.current());
        }
        let listing = Arc::new(FileListing::of_loaded(&table, &self.url).await?);
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = listing.clone();
        Ok(listing)
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

    /// Plans that read this table run on the cluster (`planner.rs`); a scan here, in the
    /// client, reads the same files.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        FileListingTable::new(self.current().as_ref().clone())
            .scan(state, projection, filters, limit)
            .await
    }
}
