//! Telemetry set up in one place: the Prometheus recorder (hot path), the local log files (every
//! event at `--log-level` and above) and a short human log on stderr.

use crate::config::Config;
use crate::logs::writer::request_log::{REQUEST_TARGET, RequestLog};
use crate::logs::writer::{FileLayer, FileWriter};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// Dependencies whose debug output says nothing about the service and would flood the file at
/// request rate; they are kept at INFO and above.
const QUIET_DEPENDENCIES: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "notify",
    "mio",
    "tower",
];

/// Handles the running agent needs: keep it alive until exit, its drop flushes the log.
#[derive(Debug)]
pub struct Telemetry {
    /// `None` when metrics are disabled.
    pub prometheus: Option<PrometheusHandle>,
    /// Count of events the log writer dropped (full queue or failed write).
    pub log_dropped: crate::logs::writer::DroppedLines,
    /// Where request events go; `None` when `--log-level` leaves them out.
    pub(crate) request_log: Option<RequestLog>,
    log_writer: FileWriter,
}

impl Telemetry {
    /// Flushes the local log: every event logged so far is in the file when this returns.
    pub fn flush(self) {
        drop(self.log_writer.guard);
    }
}

/// Installs the metrics recorder and the tracing subscriber. Call once, before [`crate::run`].
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let prometheus = config
        .metrics_enabled
        .then(crate::metrics::install)
        .transpose()?;
    if prometheus.is_some() {
        // The request counters and histograms are kept by the request path itself.
        crate::http::request_metrics::enable();
    }
    let (file_layer, log_writer) = FileLayer::new(
        &config.log_dir(),
        &config.cluster,
        &config.machine,
        config.log_buffer_lines,
    )?;
    let file_filter = QUIET_DEPENDENCIES.iter().fold(
        Targets::new().with_default(config.log_level),
        |targets, name| {
            targets.with_target(
                *name,
                config
                    .log_level
                    .min(tracing::level_filters::LevelFilter::INFO),
            )
        },
    );
    let request_log = file_filter
        .would_enable(REQUEST_TARGET, &tracing::Level::INFO)
        .then(|| file_layer.request_log());
    // stderr is for people starting the agent: lifecycle and problems, not one line per request.
    // RUST_LOG replaces this default.
    let console = service::console_log::layer("info,imds::request=off");
    // Installed with `set_global_default`, not `try_init`: the latter also installs tracing-log's
    // LogTracer, whose dynamic `enabled` calls (librdkafka logs through the `log` crate) leave
    // stale per-layer filter state behind and make the next event vanish from the filtered
    // layers, the local log included (tokio-rs/tracing#2519). librdkafka's logs reach tracing
    // through the shipper's Kafka context instead.
    let subscriber = tracing_subscriber::registry()
        .with(file_layer.with_filter(file_filter))
        .with(console);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(Telemetry {
        prometheus,
        log_dropped: log_writer.dropped.clone(),
        request_log,
        log_writer,
    })
}
