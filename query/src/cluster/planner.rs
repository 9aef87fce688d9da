//! Where a statement runs when `query` is a client of a cluster: a plan that reads the warm store
//! (`logs`) runs on the cluster; any other plan (the catalog: `information_schema`, `pg_catalog`
//! for `query serve`'s clients; constants) runs in the client, whose catalog it describes
//! (Ballista's own planner does the same for `information_schema`). It is the session's query
//! planner, so every way a statement can come (the CLI, its prompt, `query serve`'s simple and
//! extended protocols, cursors) takes the same path: the listing brought up to the table's newest
//! version (`latest_listing.rs`) and pruned by the statement's partition filters
//! (`partition_pruning.rs`), then the plan sent to the scheduler under the executor watch
//! (`executor_watch.rs`). The client only receives the rows.

use super::executor_watch::ExecutorWatch;
use super::file_listing::{FileListing, FileListingTable};
use super::latest_listing::LatestListing;
use super::partition_pruning::pruned;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, TableScan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use std::sync::Arc;

/// Sends plans over the warm store to the cluster, and plans the others in the client.
#[derive(Debug)]
pub(crate) struct ClusterPlanner {
    pub(crate) cluster: Arc<Cluster>,
}

/// The cluster a client session sends statements to.
pub(crate) struct Cluster {
    /// Ballista's client session: plans sent through it run on the scheduler's executors.
    pub(crate) remote: SessionContext,
    pub(crate) watch: ExecutorWatch,
    pub(crate) listing: Arc<LatestListing>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("watch", &self.watch)
            .field("listing", &self.listing)
            .finish_non_exhaustive()
    }
}

/// Whether `scan` reads the warm store's listing.
fn scans_the_store(scan: &TableScan) -> bool {
    source_as_provider(&scan.source)
        .is_ok_and(|provider| provider.downcast_ref::<LatestListing>().is_some())
}

/// Whether `plan` (subqueries included) reads the warm store's listing.
fn reads_the_store(plan: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scans_the_store(scan)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// `plan` with every scan of the store reading `listing`, pruned by the scan's partition
/// filters (`partition_pruning.rs`): the plain listing the cluster can decode (`codec.rs`).
fn with_listing(plan: LogicalPlan, listing: &FileListing) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(mut scan) = node else {
            return Ok(Transformed::no(node));
        };
        if !scans_the_store(&scan) {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        }
        let files = pruned(listing, &scan.table_name, &scan.filters)?;
        scan.source = provider_as_source(Arc::new(FileListingTable::new(files)));
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    })
    .data()
}

#[async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !reads_the_store(plan)? {
            return DefaultPhysicalPlanner::default()
                .create_physical_plan(plan, state)
                .await;
        }
        let statement = OnCluster {
            cluster: self.cluster.clone(),
            plan: plan.clone(),
            schema: Arc::new(plan.schema().as_arrow().clone()),
        };
        let schema = statement.schema.clone();
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(statement)],
            None,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// One statement's run on the cluster, as the one partition of its client-side plan.
#[derive(Debug)]
struct OnCluster {
    cluster: Arc<Cluster>,
    plan: LogicalPlan,
    schema: SchemaRef,
}

impl PartitionStream for OnCluster {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let cluster = self.cluster.clone();
        let plan = self.plan.clone();
        let rows = async move {
            let listing = cluster
                .listing
                .refresh()
                .await
                .map_err(|error| DataFusionError::Execution(format!("{error:#}")))?;
            let plan = with_listing(plan, &listing)?;
            cluster.watch.run(&cluster.remote, plan).await
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(rows).try_flatten(),
        ))
    }
}
