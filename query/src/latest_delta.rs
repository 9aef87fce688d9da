//! The Delta table as of each statement. delta-rs's table provider reads one snapshot, the
//! version loaded when it was built; a `query serve` running for weeks would keep answering from
//! the version it started with. This provider loads the commits made since (an incremental read
//! of the log: only the new JSON entries) when the snapshot is older than [`MAX_STALENESS`], and
//! plans each scan on the newest snapshot. A statement sees one version from start to end.

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old the snapshot may be when a statement is planned: the collector commits every few
/// seconds, so a second adds little to what a reader sees late and bounds log reads to one a
/// second however many statements run.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);

/// A Delta table whose scans are planned on its newest snapshot.
#[derive(Debug)]
pub struct LatestDelta {
    schema: SchemaRef,
    /// The table, locked while its log is read so that one reader refreshes at a time.
    table: tokio::sync::Mutex<(DeltaTable, Instant)>,
    /// The provider of the newest snapshot, for the synchronous calls of planning.
    current: Mutex<Arc<dyn TableProvider>>,
}

impl LatestDelta {
    /// A provider over the table's newest version, refreshed when it is older than MAX_STALENESS.
    pub async fn new(table: DeltaTable) -> Result<Self> {
        let provider = table.table_provider().await?;
        Ok(Self {
            schema: provider.schema(),
            table: tokio::sync::Mutex::new((table, Instant::now())),
            current: Mutex::new(provider),
        })
    }

    fn current(&self) -> Arc<dyn TableProvider> {
        // A poisoned lock still holds a usable provider: the writer only swaps an Arc.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The provider of the newest snapshot, reading the log if the one held is stale.
    async fn fresh(&self) -> Result<Arc<dyn TableProvider>> {
        let mut guard = self.table.lock().await;
        let (table, loaded) = &mut *guard;
        if loaded.elapsed() < MAX_STALENESS {
            return Ok(self.current());
        }
        let before = table.version();
        table
            .update_incremental(None)
            .await
            .map_err(|error| DataFusionError::External(Box::new(error)))?;
        *loaded = Instant::now();
        if table.version() == before {
            return Ok(self.current());
        }
        let provider = table.table_provider().await?;
        if provider.schema() != self.schema {
            return Err(DataFusionError::Plan(format!(
                "the Delta table's schema changed at version {:?}; restart to read it",
                table.version()
            )));
        }
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = provider.clone();
        Ok(provider)
    }
}

#[async_trait]
impl TableProvider for LatestDelta {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.current().supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.fresh()
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}
