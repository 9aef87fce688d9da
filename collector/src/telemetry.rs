//! Telemetry in one place: the Prometheus recorder and a human log on stderr (`RUST_LOG`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub fn init() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(crate::metrics::FLUSH_DURATION_SECONDS.into()),
            crate::metrics::FLUSH_BUCKETS,
        )?
        .install_recorder()?;
    crate::metrics::describe();
    crate::metrics::register_at_zero();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(handle)
}

/// The human log on stderr only, for one-shot commands (`collector compact`).
pub fn init_stderr_only() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
