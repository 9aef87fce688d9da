//! A statement on the cluster is answered only if no executor was lost while it ran; otherwise
//! it runs again, whole, on the executors left (once), or fails with a clear error.
//!
//! Why: when Ballista 55's scheduler drops an executor mid-job it rolls back and re-runs the
//! stages whose shuffle output lived there, and in our trials (an executor SIGKILLed during a
//! join with a GROUP BY) the re-run jobs finished "successfully" with rows counted up to 1.5
//! times. Re-running the whole statement is always right: the table it reads is a fixed list
//! of immutable files (`file_listing.rs`). The scheduler fails a job whose task cannot fetch a
//! lost executor's output instead of re-running stages (`stage_max_failures` 1 in
//! `query-scheduler`), so the other way a loss shows is an error, retried here the same way.
//!
//! How: the scheduler's REST API lists the executors it holds (`/api/executors`). The set is
//! read before the statement is submitted and again once its job has ended, which with
//! Ballista's client is when the first batch (or the end, or an error) comes: the client
//! fetches results only from a finished job. Any executor of the first set missing from the
//! second means the job may have been re-run in part: its answer is dropped.

use anyhow::{Context, anyhow};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::time::Duration;

/// Times a statement is run when executors are lost during it.
const ATTEMPTS: usize = 2;

/// The scheduler's list of executors, read around each statement the cluster runs.
#[derive(Debug)]
pub(crate) struct ExecutorWatch {
    executors_url: String,
    http: reqwest::Client,
}

impl ExecutorWatch {
    /// Watches the executors of the scheduler at `cluster` (`df://host:port`; the REST API is
    /// served on the scheduler's gRPC port).
    pub(crate) fn new(cluster: &str) -> anyhow::Result<ExecutorWatch> {
        let address = cluster
            .strip_prefix("df://")
            .with_context(|| format!("--cluster {cluster}: expected df://HOST:PORT"))?;
        Ok(ExecutorWatch {
            executors_url: format!("http://{address}/api/executors"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// The ids of the executors the scheduler holds now.
    pub(crate) async fn executors(&self) -> anyhow::Result<BTreeSet<String>> {
        let cannot = || {
            format!(
                "cannot list the cluster's executors at {} (needed to tell a complete answer \
                 from one an executor's loss spoiled)",
                self.executors_url
            )
        };
        let response = self
            .http
            .get(&self.executors_url)
            .send()
            .await
            .with_context(cannot)?
            .error_for_status()
            .with_context(cannot)?;
        let body = response.bytes().await.with_context(cannot)?;
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&body).with_context(cannot)?;
        listed
            .iter()
            .map(|executor| executor["id"].as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("{}: an executor without an id", cannot()))
    }

    /// Runs `plan` on the cluster until an attempt ends with every executor it started with still
    /// there; its rows are returned as a stream that begins with the first batch. Errors are the
    /// cluster's, as they came.
    pub(crate) async fn run(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream> {
        let listed = |listing: anyhow::Result<BTreeSet<String>>| {
            listing.map_err(|error| DataFusionError::Execution(format!("{error:#}")))
        };
        let mut attempt = 1;
        loop {
            let before = listed(self.executors().await)?;
            if before.is_empty() {
                return exec_err!("the cluster has no executor: start query-executor processes");
            }
            let mut rows = ctx
                .execute_logical_plan(plan.clone())
                .await?
                .execute_stream()
                .await?;
            // The job has ended when the first batch, the end or an error comes.
            let first = rows.next().await;
            let after = listed(self.executors().await)?;
            let lost: Vec<&String> = before.difference(&after).collect();
            if lost.is_empty() {
                let first = first.transpose()?;
                let schema = rows.schema();
                let all = futures::stream::iter(first.map(Ok)).chain(rows);
                return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, all)));
            }
            if attempt == ATTEMPTS {
                return exec_err!(
                    "executors {lost:?} were lost while the statement ran ({ATTEMPTS} attempts): \
                     its answer could be wrong and is not shown; run it again when the cluster is \
                     steady"
                );
            }
            eprintln!(
                "query: executors {lost:?} were lost while the statement ran; its answer is \
                 dropped and the statement runs again on the executors left"
            );
            attempt += 1;
        }
    }
}
