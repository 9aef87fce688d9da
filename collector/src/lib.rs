//! The collector: a Kafka consumer-group member that turns the agents' INFO+ events into the warm
//! store, validated, deduplicated and hive-partitioned Parquet. More collectors in the same group
//! share the partitions.
//!
//! | stage | file |
//! |---|---|
//! | Kafka -> per-partition batches | `from_kafka.rs` -> `batch.rs` |
//! | batch -> writer thread -> Parquet, then commit | `writer.rs` -> `to_parquet.rs` -> `state.rs` |
//! | closed hours' small files -> one file per partition (`collector compact`) | `compact.rs` |
//!
//! Guarantee: every event consumed is in the store exactly once, after any crash: offsets are
//! committed only after the data is durable, the store's own per-partition state says which
//! offsets it holds (replays of those are skipped), and an agent's resends are recognised by
//! their per-machine `seq`.

pub mod batch;
pub mod compact;
pub mod config;
pub mod exporter;
pub mod from_kafka;
pub mod metrics;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod to_parquet;
pub mod writer;

use anyhow::Context;
use config::Config;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Serves `/metrics` and consumes until `shutdown`; then writes and commits what it holds.
pub async fn run(
    config: Config,
    prometheus: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding /metrics to {}", config.metrics_listen))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let metrics = tokio::spawn(exporter::serve(listener, prometheus, shutdown.clone()));
    let consumer_stop = shutdown.clone();
    let result =
        tokio::task::spawn_blocking(move || from_kafka::consume(&config, &consumer_stop)).await;
    shutdown.cancel();
    let _ = metrics.await;
    result.context("consumer thread")?
}
