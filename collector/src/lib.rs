//! The collector: a Kafka consumer-group member that turns the agents' INFO+ events into the warm
//! store, a Delta Lake table of validated, deduplicated rows. More collectors in the same group
//! share the partitions and commit to the same table.
//!
//! | stage | file |
//! |---|---|
//! | Kafka -> per-partition batches (offsets set from the table) | `from_kafka.rs` -> `batch.rs` |
//! | batches -> writer thread -> resends dropped -> one Delta commit | `writer.rs` -> `resends.rs` -> `to_delta.rs` |
//! | the table: schema, location, progress (`txn`), commit with fence | the `warm_table` crate |
//! | `collector compact` / `collector retain` (the table's own operations, run once) | `maintenance.rs` |
//! | `--compact-every`: compaction in the daemon, new log patterns exported (warm feeds hot) | `compaction.rs` |
//!
//! Guarantee: every event consumed is in the table exactly once, after any crash: a commit
//! carries its rows with each Kafka partition's last offset (so replays of those are skipped and
//! a stale owner's commit is refused), and each machine's highest `seq` (so an agent's resends are
//! recognised).
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod compaction;
pub mod config;
mod from_kafka;
pub mod maintenance;
mod metrics;
mod resends;
pub mod telemetry;
mod to_delta;
mod writer;

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
    let newest = compaction::NewestPatterns::default();
    let shown = newest.clone();
    let metrics = tokio::spawn(service::exporter::serve(
        listener,
        prometheus,
        move |text: &mut String| shown.render(text),
        shutdown.clone(),
    ));
    let compacting = config.compact_every.map(|every| {
        tracing::info!(every = %humantime::format_duration(every), "compacting the table periodically");
        tokio::spawn(compaction::every(config.clone(), every, newest, shutdown.clone()))
    });
    let consumer_stop = shutdown.clone();
    let runtime = tokio::runtime::Handle::current();
    let result =
        tokio::task::spawn_blocking(move || from_kafka::consume(&config, runtime, &consumer_stop))
            .await;
    shutdown.cancel();
    let _ = metrics.await;
    if let Some(compacting) = compacting {
        let _ = compacting.await;
    }
    result.context("consumer thread")?
}
