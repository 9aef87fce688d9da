//! The agent: a per-host instance metadata service (Azure IMDS compatible) and the source of the
//! three telemetry paths. `main.rs` parses the configuration and sets up telemetry; [`run`]
//! serves until the shutdown token is cancelled.
//!
//! | stage | file |
//! |---|---|
//! | configuration | `config.rs` |
//! | metadata sources -> store | `metadata/{files,upstream}.rs` -> `metadata/mod.rs` |
//! | request -> answer | `http/guard.rs` -> `http/routes.rs` -> `http/render.rs` |
//! | request -> counters (hot path) | `http/count.rs` -> `metrics.rs` -> `exporter.rs` (`/metrics`) |
//! | event -> local log (warm and cold source) | `logs/to_file.rs` |
//! | local log -> Kafka (warm path) | `logs/to_kafka.rs` with `logs/checkpoint.rs` |
//! | local log -> hourly Parquet, retention (cold path) | `logs/roll_to_parquet.rs` |
//! | hourly files -> a dev box (admin API) | `admin.rs` |

pub mod admin;
pub mod api_version;
pub mod config;
pub mod exporter;
pub mod http;
pub mod logs;
pub mod metadata;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

use anyhow::Context;
use config::Config;
use http::{AppState, guard::RateLimit};
use metadata::MetadataStore;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use telemetry::Telemetry;
use tokio::net::TcpListener;
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
    metadata::start(&config, &store, &tasks, shutdown.clone()).await?;

    // The warm shipper runs on a thread of its own, stopped after the servers (below).
    let shipper_stop = CancellationToken::new();
    let shipper = match &config.kafka {
        Some(kafka) => Some(logs::to_kafka::start(
            logs::to_kafka::ShipperConfig {
                brokers: kafka.brokers.clone(),
                topic: kafka.topic.clone(),
                machine: config.machine.clone(),
                log_dir: config.log_dir(),
                checkpoint: config.shipper_checkpoint(),
            },
            shipper_stop.clone(),
        )?),
        None => None,
    };

    // The cold-path roller, also on a thread of its own.
    let roller = logs::roll_to_parquet::start(
        logs::roll_to_parquet::RollerConfig {
            log_dir: config.log_dir(),
            parquet_dir: config.parquet_dir(),
            machine: config.machine.clone(),
            retention: config.retention.clone(),
            shipper_checkpoint: config.kafka.is_some().then(|| config.shipper_checkpoint()),
        },
        shipper_stop.clone(),
    )?;

    let rate_limit = config
        .rate_limit
        .and_then(NonZeroU32::new)
        .map(RateLimit::new);
    if let Some(limit) = &rate_limit {
        limit.spawn_cleanup(shutdown.clone());
    }
    let app = http::router(AppState {
        store: Arc::clone(&store),
        rate_limit,
    });

    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the metadata API to {}", config.listen))?;
    tracing::info!(addr = %api_listener.local_addr()?, "metadata API listening");
    let metrics_listener = match &telemetry.prometheus {
        Some(handle) => {
            let listener = TcpListener::bind(config.metrics_listen)
                .await
                .with_context(|| format!("binding /metrics to {}", config.metrics_listen))?;
            tracing::info!(addr = %listener.local_addr()?, "metrics listening");
            Some((listener, handle.clone()))
        }
        None => {
            tracing::info!("metrics disabled: no /metrics listener");
            None
        }
    };
    tracing::info!(cluster = %config.cluster, machine = %config.machine, version = VERSION, source = ?config.source, "agent started");

    let admin_listener = match &config.admin {
        Some(admin) => {
            let listener = TcpListener::bind(admin.listen)
                .await
                .with_context(|| format!("binding the admin API to {}", admin.listen))?;
            tracing::info!(addr = %listener.local_addr()?, "admin listening");
            let state = admin::AdminState {
                token: admin.token.as_str().into(),
                data_dir: config.data_dir.clone(),
            };
            Some((listener, admin::router(state)))
        }
        None => None,
    };

    let refresh = scrape_time_values(Arc::clone(&store), telemetry);
    let api = axum::serve(
        api_listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let metrics = async {
        match metrics_listener {
            Some((listener, handle)) => {
                exporter::serve(listener, handle, refresh, shutdown.clone()).await
            }
            None => Ok(()),
        }
    };
    let admin_server = async {
        match admin_listener {
            Some((listener, router)) => {
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
            }
            None => Ok(()),
        }
    };
    let servers = async {
        let result = tokio::try_join!(api.into_future(), metrics, admin_server);
        // One server failing stops the other and the background tasks.
        shutdown.cancel();
        result
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        result = servers => { result.context("serving")?; }
        () = deadline => tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown deadline passed with requests still in flight"),
    }
    // Stop the shipper after the last request (it ships what it can and stores its checkpoint),
    // and the roller after the pass it is in.
    shipper_stop.cancel();
    for thread in shipper.into_iter().chain([roller]) {
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_or(true, |joined| joined.is_err())
        {
            tracing::warn!("a telemetry thread ended abnormally");
        }
    }
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
) -> Arc<dyn Fn() + Send + Sync> {
    let dropped = telemetry.log_dropped.clone();
    Arc::new(move || {
        if let Some(age) = store.age() {
            ::metrics::gauge!(metrics::METADATA_AGE_SECONDS).set(age.as_secs_f64());
        }
        ::metrics::counter!(metrics::LOG_DROPPED_EVENTS_TOTAL)
            .absolute(dropped.dropped_lines() as u64);
    })
}
