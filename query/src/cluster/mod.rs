//! `query --cluster df://HOST:PORT`: the same statements on an Apache DataFusion Ballista cluster
//! instead of in-process. The client plans; the project's own scheduler and executors (crate
//! `cluster`, Ballista's custom scheduler/executor pattern) run the plan, with this project's
//! functions ([`scalar_functions`], [`window_functions`]) and codec ([`LogsCodec`]) installed on
//! every one of them, and S3 settings from the usual `AWS_*` variables. The warm store's table
//! reaches them as a plain listing of its active files (`file_listing.rs` says why).

mod codec;
mod executor_watch;
mod file_listing;

pub use codec::LogsCodec;
pub use executor_watch::ExecutorWatch;

use crate::sources::{self, Source};
use anyhow::{Context, bail};
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{ScalarUDF, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};
use file_listing::{FileListing, FileListingTable, PARTITIONS};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The project's scalar functions, which plans over `logs` call (the view's `uuid_text`).
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![crate::uuid_text::udf()]
}

/// The project's window functions (`log_pattern`).
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(crate::log_pattern::udwf())]
}

/// A session whose statements run on the cluster at `cluster` (`df://host:port`), with table
/// `logs` over the newest version of the warm store's Delta table at `data` (a directory every
/// executor can read at the same path, or `s3://bucket/prefix`).
pub(crate) async fn session(cluster: &str, data: &[String]) -> anyhow::Result<SessionContext> {
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
    let opened = sources::open(&source, &Arc::new(AtomicU64::new(0)))?;
    let url = url::Url::parse(opened.table_url.as_str())?;
    let listing = FileListing::of_table(&url)
        .await
        .with_context(|| format!("{data}: --cluster reads the warm store's Delta table"))?;
    let config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_logical_extension_codec(Arc::new(LogsCodec::default()))
        // The static planner: with adaptive planning (Ballista 55's default) a job whose executor
        // was killed mid-stage waited for ever after the roll-back in our trials.
        .with_ballista_adaptive_query_planner(false)
        // Statements are answered only if no executor was lost while they ran.
        .with_extension(Arc::new(ExecutorWatch::new(cluster)?));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(cluster, state)
        .await
        .with_context(|| format!("--cluster {cluster}"))?;
    for function in scalar_functions() {
        ctx.register_udf(function.as_ref().clone());
    }
    for function in window_functions() {
        ctx.register_udwf(function.as_ref().clone());
    }
    let files = Arc::new(FileListingTable::new(listing));
    ctx.register_table(
        "logs",
        Arc::new(crate::tables::logs_view(files, &PARTITIONS)?),
    )?;
    Ok(ctx)
}
