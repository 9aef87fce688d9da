//! The outermost stage of a request: gives every response its `x-ms-request-id` and `Server`
//! headers, counts it on the hot path, and writes the one INFO request event of the local log.
//!
//! Labels are bounded by construction: the endpoint is one of three fixed names (never the raw
//! path), the api-version a supported value or `unsupported`/`none`, the format one of three.
//! The request event carries the same request id as the response header.

use super::query::ImdsQuery;
use super::routes::caller_of;
use crate::logs::writer::request_log::{RequestEvent, RequestLog};
use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// `Server` header value.
pub(crate) const SERVER: &str = concat!("IMDS/", env!("CARGO_PKG_VERSION"));
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// Longest path kept in the request event: enough for any real document path.
const MAX_LOGGED_PATH: usize = 2048;

/// The matched endpoint label of a path.
pub(crate) fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/metadata/versions" => "/metadata/versions",
        "/metadata/instance" => "/metadata/instance",
        p if p.starts_with("/metadata/instance/") => "/metadata/instance",
        "/metadata/scheduledevents" => "/metadata/scheduledevents",
        "/metadata/loadbalancer" => "/metadata/loadbalancer",
        p if p == "/metadata/identity" || p.starts_with("/metadata/identity/") => {
            "/metadata/identity"
        }
        p if p == "/metadata/attested" || p.starts_with("/metadata/attested/") => {
            "/metadata/attested"
        }
        _ => "other",
    }
}

/// The count stage around `inner` (the rest of the request's way to its answer).
pub(crate) async fn observe<F, Fut>(
    mut request: Request,
    request_log: Option<&RequestLog>,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let start = Instant::now();
    // Shares the request's bytes (no copy): the event's path is read from it after the answer.
    let uri = request.uri().clone();
    let endpoint = endpoint_of(uri.path());
    let query = ImdsQuery::parse(uri.query());
    let (api_version_label, format_label) = (query.api_version_label(), query.format_label());
    let api_version_raw = request_log.and_then(|_| query.api_version_raw());
    let held = query.waits_for_change();
    let method = request.method().clone();
    let caller = caller_of(&request);
    request.extensions_mut().insert(query);

    let _in_flight = InFlight::enter();
    let mut response = inner(request).await;
    let latency = start.elapsed();

    let request_id = uuid::Uuid::new_v4();
    // Formatted once, on the stack.
    let mut id_text = uuid::Uuid::encode_buffer();
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut id_text)) {
        headers.insert(REQUEST_ID, id);
    }
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    let status = response.status();
    let bytes = response.body().size_hint().exact().unwrap_or(0);

    super::request_metrics::count(
        (endpoint, api_version_label, format_label, status.as_u16()),
        // A held wait-for-change request waits by design: its time would read as slowness to
        // the latency panels and alerts.
        (!held).then_some(latency),
        bytes,
    );
    if let Some(log) = request_log {
        log.write(&RequestEvent {
            request_id,
            method: method.as_str(),
            path: super::truncate(uri.path(), MAX_LOGGED_PATH),
            api_version: api_version_raw.as_deref(),
            format: format_label,
            status: status.as_u16(),
            // Not `as_micros`: a 128-bit division, visible in the request path's profile.
            latency_us: latency.as_secs() * 1_000_000 + u64::from(latency.subsec_micros()),
            response_bytes: bytes,
            caller,
        });
    }
    response
}

/// Requests being served now. A plain counter, published as `imds_requests_in_flight` at scrape
/// time ([`requests_in_flight`]): a gauge handle moved on every request was two compare-and-swap
/// loops on a float shared by every worker, plus the exporter's generation counter, for a value
/// only a scrape reads.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// The number of requests being served.
pub(crate) fn requests_in_flight() -> u64 {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Holds the in-flight count up while a request is served, and brings it down even when the
/// client goes away and the request future is dropped.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}
