//! The human log on stderr: for people starting a binary, lifecycle and problems. `RUST_LOG`
//! replaces the binary's default filter.

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::registry::LookupSpan;

/// The stderr layer, filtered by `RUST_LOG` or else `default_filter`, for a binary that adds
/// layers of its own (the agent's local log files).
pub fn layer<S>(default_filter: &str) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter)
}

/// Installs the stderr log as the only one. Also takes in the `log` records of libraries
/// (librdkafka through rdkafka, deltalake's dependencies), which a single global filter handles
/// correctly. Does nothing if a subscriber is installed already.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
