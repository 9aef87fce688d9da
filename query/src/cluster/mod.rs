//! `query --cluster df://HOST:PORT`: the same statements on an Apache DataFusion Ballista cluster
//! instead of in-process. The client plans; the project's own scheduler and executors (crate
//! `cluster`, Ballista's custom scheduler/executor pattern) run the plan, with this project's
//! functions ([`scalar_functions`], [`window_functions`]) and codec ([`LogsCodec`]) installed on
//! every one of them, and S3 settings from the usual `AWS_*` variables. The warm store's table
//! reaches them as a plain listing of its active files (`file_listing.rs` says why), brought to
//! the table's newest version before each statement (`latest_listing.rs`) and cut to the
//! partitions the statement reads (`partition_pruning.rs`).
//!
//! | stage | file |
//! |---|---|
//! | statement -> cluster (reads `logs`) or client (catalog) | `planner.rs` |
//! | Delta table -> listing of its newest version | `latest_listing.rs`, `file_listing.rs` |
//! | listing -> the files the statement's partition filters leave | `partition_pruning.rs` |
//! | listing -> plan sent to the scheduler | `codec.rs` |
//! | job -> rows, only if no executor was lost meanwhile | `executor_watch.rs` |

mod codec;
mod executor_watch;
mod file_listing;
mod latest_listing;
mod partition_pruning;
mod planner;

pub use codec::LogsCodec;

use crate::source::{self, Source};
use crate::table::WARM_PARTITIONS;
use anyhow::{Context, bail};
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{ScalarUDF, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};
use executor_watch::ExecutorWatch;
use latest_listing::LatestListing;
use planner::{Cluster, ClusterPlanner};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The project's scalar functions, which plans over `logs` call (the view's `uuid_text`).
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![crate::table::uuid_text::udf()]
}

/// The project's window functions (`log_pattern`).
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(crate::log_pattern::udwf())]
}

/// A client session (with `config` and `runtime`) whose statements over table `logs` run on the
/// cluster at `cluster` (`df://host:port`), each over the newest version of the warm store's
/// Delta table at `data` (a directory every executor can read at the same path, or
/// `s3://bucket/prefix`); statements over the catalog run in the client (`planner.rs`).
pub(crate) async fn session(
    cluster: &str,
    data: &[String],
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> anyhow::Result<SessionContext> {
    let [data] = data else {
        bail!(
            "--cluster reads one warm store: give one --data (a Delta table: a directory or s3://)"
        )
    };
    let source = match Source::parse(data)? {
        Source::Agent(_) => bail!(
            "{data}: --cluster reads a warm store (a directory or s3://), not an agent's admin API"
        ),
        other => other,
    };
    let opened = source::open(&source, &Arc::new(AtomicU64::new(0)))?;
    let url = url::Url::parse(opened.table_url.as_str())?;
    let listing = Arc::new(
        LatestListing::open(url)
            .await
            .with_context(|| format!("{data}: --cluster reads the warm store's Delta table"))?,
    );
    let remote_config = SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(LogsCodec::default()))
        // The static planner: with adaptive planning (Ballista 55's default) a job whose executor
        // was killed mid-stage waited for ever after the roll-back in our trials.
        .with_ballista_adaptive_query_planner(false);
    let remote_state = SessionStateBuilder::new()
        .with_config(remote_config)
        .with_default_features()
        .build();
    let remote = SessionContext::remote_with_state(cluster, remote_state)
        .await
        .with_context(|| format!("--cluster {cluster}"))?;
    // Statements are answered only if no executor was lost while they ran.
    let watch = ExecutorWatch::new(cluster)?;
    // Statements over the catalog never reach the scheduler: make sure it is there at start.
    watch.executors().await?;
    let cluster = Arc::new(Cluster {
        remote,
        watch,
        listing: listing.clone(),
    });
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_query_planner(Arc::new(ClusterPlanner { cluster }))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for function in scalar_functions() {
        ctx.register_udf(function.as_ref().clone());
    }
    for function in window_functions() {
        ctx.register_udwf(function.as_ref().clone());
    }
    ctx.register_table(
        "logs",
        Arc::new(crate::table::logs_view(listing, &WARM_PARTITIONS)?),
    )?;
    Ok(ctx)
}
