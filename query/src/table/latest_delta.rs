//! The Delta table as of each statement. delta-rs's table provider reads one snapshot, the
//! version loaded when it was built; a `query serve` running for weeks would keep answering from
//! the version it started with. This provider loads the commits made since (an incremental read
//! of the log: only the new JSON entries) when the snapshot is older than [`MAX_STALENESS`], and
//! plans each scan on the newest snapshot. A statement sees one version from start to end.
//!
//! Two ways to hold the snapshot, chosen by how many statements will use it:
//! - one statement (`query SQL`): delta-rs's lazy snapshot. Opening the table reads the protocol
//!   and metadata, not the list of files; the scan replays the log's file actions with the
//!   statement's filters (delta-kernel skips the files whose partition values or statistics rule
//!   them out as it reads the checkpoint), so a one-hour lookup does not first load months of
//!   file entries with their statistics: that load was most of such a lookup's time
//!   (BENCHMARKS.md);
//! - a session (`query serve`, the prompt): the files loaded once with their statistics and
//!   kept up to date from the new commits, so a statement plans from memory instead of replaying
//!   the whole log.
//!
//! Only the filters that can skip files reach delta-rs's scan (`file_skipping.rs`).

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::TableProviderBuilder;
use deltalake::kernel::{Snapshot, Version};
use deltalake::logstore::LogStoreRef;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old the snapshot may be when a statement is planned: the collector commits every few
/// seconds, so a second adds little to what a reader sees late and bounds log reads to one a
/// second however many statements run.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);

/// How the table's snapshot is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Read at each scan, with its filters (one statement).
    PerScan,
    /// Loaded once, then updated from new commits (many statements).
    Kept,
}

#[derive(Debug)]
enum Held {
    PerScan(Arc<Snapshot>),
    Kept(DeltaTable),
}

/// A Delta table whose scans are planned on its newest snapshot.
#[derive(Debug)]
pub struct LatestDelta {
    schema: SchemaRef,
    /// The table's partition columns: filters on them alone always go to the scan.
    partition_columns: &'static [&'static str],
    log_store: LogStoreRef,
    /// The snapshot and when it was read, locked while the log is read so that one reader
    /// refreshes at a time.
    held: tokio::sync::Mutex<(Held, Instant)>,
    /// The provider of the newest snapshot, for the synchronous calls of planning.
    current: Mutex<Arc<dyn TableProvider>>,
}

fn external(error: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Refuses a zero-length commit file in the log after version `after` (all of them without
/// one): delta-rs takes an empty commit for a commit with no actions, so a writer cut off
/// mid-write (or a damaged copy) would silently drop that version's files from every answer.
async fn no_empty_commits(log_store: &LogStoreRef, after: Option<Version>) -> Result<()> {
    use futures::TryStreamExt;
    let store = log_store.object_store(None);
    let log = object_store::path::Path::from("_delta_log");
    let listing = match after {
        Some(version) => {
            let offset = log.clone().join(format!("{version:020}.json"));
            store.list_with_offset(Some(&log), &offset)
        }
        None => store.list(Some(&log)),
    };
    let entries: Vec<object_store::ObjectMeta> = listing
        .try_collect()
        .await
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    if let Some(empty) = entries.iter().find(|entry| {
        entry.size == 0
            && entry
                .location
                .filename()
                .is_some_and(|name| name.ends_with(".json") && !name.starts_with('_'))
    }) {
        return Err(DataFusionError::Execution(format!(
            "{}: the Delta commit is empty (0 bytes): the log is damaged, a writer was cut off \
             mid-write or the file was truncated; the table cannot be read as of this version",
            empty.location
        )));
    }
    Ok(())
}

impl Held {
    async fn provider(&self, log_store: &LogStoreRef) -> Result<Arc<dyn TableProvider>> {
        let builder = match self {
            Held::PerScan(snapshot) => TableProviderBuilder::default()
                .with_log_store(log_store.clone())
                .with_snapshot(snapshot.clone()),
            Held::Kept(loaded) => loaded.table_provider(),
        };
        Ok(Arc::new(builder.build().await?))
    }

    fn version(&self) -> Option<Version> {
        match self {
            Held::PerScan(snapshot) => Some(snapshot.version()),
            Held::Kept(loaded) => loaded.version(),
        }
    }
}

impl LatestDelta {
    /// A provider over the newest version of `table` (built, not loaded, partitioned by
    /// `partition_columns`), refreshed when it is older than MAX_STALENESS.
    pub async fn open(
        mut table: DeltaTable,
        partition_columns: &'static [&'static str],
        files: Files,
    ) -> Result<Self> {
        let log_store = table.log_store();
        no_empty_commits(&log_store, None).await?;
        let held = match files {
            Files::PerScan => Held::PerScan(Arc::new(
                Snapshot::try_new(log_store.as_ref(), None)
                    .await
                    .map_err(external)?,
            )),
            Files::Kept => {
                table.load().await.map_err(external)?;
                Held::Kept(table)
            }
        };
        let provider = held.provider(&log_store).await?;
        Ok(Self {
            schema: provider.schema(),
            partition_columns,
            log_store,
            held: tokio::sync::Mutex::new((held, Instant::now())),
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
        let mut guard = self.held.lock().await;
        let (held, loaded) = &mut *guard;
        if loaded.elapsed() < MAX_STALENESS {
            return Ok(self.current());
        }
        let before = held.version();
        match held {
            Held::PerScan(snapshot) => {
                *snapshot = snapshot
                    .clone()
                    .update(self.log_store.engine(None), None)
                    .await
                    .map_err(external)?;
            }
            Held::Kept(table) => table.update_incremental(None).await.map_err(external)?,
        }
        *loaded = Instant::now();
        if held.version() == before {
            return Ok(self.current());
        }
        no_empty_commits(&self.log_store, before).await?;
        let provider = held.provider(&self.log_store).await?;
        if provider.schema() != self.schema {
            return Err(DataFusionError::Plan(format!(
                "the Delta table's schema changed at version {:?}; restart to read it",
                held.version()
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
        let delta = self.current().supports_filters_pushdown(filters)?;
        Ok(filters
            .iter()
            .zip(delta)
            .map(|(filter, delta)| {
                if crate::table::file_skipping::skips_files(filter, self.partition_columns) {
                    delta
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
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
