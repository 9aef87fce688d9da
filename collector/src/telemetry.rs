//! Telemetry in one place: the Prometheus recorder and a human log on stderr (`RUST_LOG`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder (every series at zero) and the stderr log.
pub fn init() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(crate::metrics::FLUSH_DURATION_SECONDS.into()),
            crate::metrics::FLUSH_BUCKETS,
        )?
        .install_recorder()?;
    crate::metrics::describe();
    crate::metrics::register_at_zero();
    service::console_log::init("info");
    Ok(handle)
}

/// The human log on stderr only, for one-shot commands (`collector compact`).
pub fn init_stderr_only() {
    service::console_log::init("warn");
}
