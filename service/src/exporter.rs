//! The `/metrics` endpoint on a listener of its own (never a service port: only the host's
//! Prometheus scrapes it).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often histogram buffers are folded in even when nobody scrapes (unfolded, they grow with
/// every observation until the next scrape).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `/metrics` until shutdown. `refresh` runs just before each page is rendered: it sets
/// the values computed at scrape time (gauges read from elsewhere) and appends to the page any
/// series the recorder does not hold.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    refresh: impl Fn(&mut String) + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = handle.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        while tokio::select! { _ = upkeep_stop.cancelled() => false, _ = tick.tick() => true } {
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let mut appended = String::new();
            refresh(&mut appended);
            let mut body = handle.render();
            body.push_str(&appended);
            async move {
                let content_type =
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
