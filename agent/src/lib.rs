//! The agent: a per-host instance metadata service (Azure IMDS compatible) and the source of the
//! three telemetry paths. `main.rs` parses the configuration and sets up telemetry; [`run`]
//! serves until the shutdown token is cancelled.
//!
//! | stage | file |
//! |---|---|
//! | configuration (each component's settings beside it: `logs/*/settings.rs`) | `config.rs` |
//! | metadata sources -> store | `metadata/{files,upstream}.rs` -> `metadata/mod.rs` |
//! | connection -> request -> answer | `http/connections.rs` -> `http/guard.rs` -> `http/routes.rs` (`metadata/by_version.rs`, `http/wait_for_change.rs`) -> `http/render.rs` |
//! | request -> counters (hot path) | `http/count.rs` -> `metrics.rs` -> `exporter.rs` (`/metrics`) |
//! | event -> local log (warm and cold source) | `logs/writer/mod.rs` -> `logs/writer/log_queue.rs` -> `logs/writer/hourly_file.rs` |
//! | local log -> Kafka (warm path) | `logs/shipper/mod.rs` with `logs/shipper/checkpoint.rs` |
//! | local log -> hourly Parquet, retention (cold path) | `logs/roller/mod.rs` |
//! | hourly files -> a dev box (admin API) | `admin/` |
//! | operator's fault switch (admin API) -> metadata API | `http/fault.rs` |
#![warn(missing_docs, unreachable_pub)]

mod admin;
pub mod api_version;
pub mod config;
mod http;
mod listeners;
pub mod logs;
pub mod metadata;
mod metrics;
pub mod telemetry;

use anyhow::Context;
use config::Config;
use http::{AppState, guard::RateLimit};
use listeners::Listeners;
use metadata::MetadataStore;
use std::num::NonZeroU32;
use std::sync::Arc;
use telemetry::Telemetry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The agent's version, as in the `Server` header and `agent_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Serves the metadata API and `/metrics` until `shutdown` is cancelled, then stops accepting,
/// lets in-flight requests finish (up to `shutdown_timeout`) and stops the background tasks.
pub async fn run(
    config: Config,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    ::metrics::gauge!(metrics::BUILD_INFO,
        "version" => VERSION, "cluster" => config.cluster.clone(), "machine" => config.machine.clone())
    .set(1.0);

    let store = Arc::new(MetadataStore::new());
    let tasks = TaskTracker::new();
    metadata::start(
        &config.source,
        &config.data_dir,
        &store,
        &tasks,
        shutdown.clone(),
    )
    .await?;
    // On threads of their own; stopped after the servers, so the last requests are shipped.
    let log_threads = logs::LogThreads::start(config.shipper(), config.roller())?;

    let rate_limit = config
        .rate_limit
        .and_then(NonZeroU32::new)
        .map(RateLimit::new);
    if let Some(limit) = &rate_limit {
        limit.spawn_cleanup(shutdown.clone());
    }
    let faults = http::fault::Faults::new();
    let app = http::MetadataApi::new(AppState::new(http::SharedState {
        store: Arc::clone(&store),
        rate_limit,
        faults: Arc::clone(&faults),
        held: http::wait_for_change::HeldRequests::new(config.wait_for_change, shutdown.clone()),
        request_log: telemetry.request_log.clone(),
    }));
    let listeners =
        Listeners::bind(&config, telemetry.prometheus.as_ref(), faults, &shutdown).await?;
    tracing::info!(cluster = %config.cluster, machine = %config.machine, version = VERSION, source = ?config.source, "agent started");

    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        result = listeners.serve(app, scrape_time_values(Arc::clone(&store), telemetry), &shutdown) => {
            result.context("serving")?;
        }
        () = deadline => tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown deadline passed with requests still in flight"),
    }
    log_threads.stop().await;
    tasks.close();
    if tokio::time::timeout(config.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop in time");
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// Values Prometheus reads at scrape time rather than on every change.
fn scrape_time_values(
    store: Arc<MetadataStore>,
    telemetry: &Telemetry,
) -> Arc<dyn Fn(&mut String) + Send + Sync> {
    let dropped = telemetry.log_dropped.clone();
    Arc::new(move |page: &mut String| {
        if let Some(age) = store.age() {
            ::metrics::gauge!(metrics::METADATA_AGE_SECONDS).set(age.as_secs_f64());
        }
        ::metrics::counter!(metrics::LOG_DROPPED_EVENTS_TOTAL).absolute(dropped.dropped_lines());
        ::metrics::gauge!(metrics::REQUESTS_IN_FLIGHT)
            .set(http::count::requests_in_flight() as f64);
        http::request_metrics::scrape(page);
    })
}
