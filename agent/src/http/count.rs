//! The outermost route layer: gives every response its `x-ms-request-id` and `Server` headers,
//! counts it on the hot path, and writes the one INFO request event of the local log.
//!
//! Labels are bounded by construction: the endpoint is one of three fixed names (never the raw
//! path), the api-version a supported value or `unsupported`/`none`, the format one of three.
//! The request event carries the same request id as the response header.

use super::query::ImdsQuery;
use super::routes::caller_of;
use crate::metrics::{
    REQUEST_DURATION_SECONDS, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, RESPONSE_SIZE_BYTES,
};
use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// `Server` header value.
pub const SERVER: &str = concat!("IMDS/", env!("CARGO_PKG_VERSION"));
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// Longest path kept in the request event: enough for any real document path.
const MAX_LOGGED_PATH: usize = 2048;

/// The matched endpoint label of a path.
pub fn endpoint_of(path: &str) -> &'static str {
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

/// The count layer.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = endpoint_of(request.uri().path());
    let query = ImdsQuery::parse(request.uri().query());
    let (api_version_label, format_label) = (query.api_version_label(), query.format_label());
    let api_version_raw = query.api_version_raw().map(str::to_owned);
    let held = query.waits_for_change();
    let method = request.method().clone();
    let path = super::truncate(request.uri().path(), MAX_LOGGED_PATH).to_owned();
    let caller = caller_of(&request);
    request.extensions_mut().insert(query);

    let _in_flight = InFlight::enter();
    let mut response = next.run(request).await;
    let latency = start.elapsed();

    // Formatted once, on the stack, for the header and the log event.
    let mut id_text = uuid::Uuid::encode_buffer();
    let request_id: &str = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_text);
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    let status = response.status();
    let bytes = response.body().size_hint().exact().unwrap_or(0);

    metrics::counter!(REQUESTS_TOTAL,
        "endpoint" => endpoint, "api_version" => api_version_label,
        "format" => format_label, "status" => status.as_str().to_owned())
    .increment(1);
    // A held wait-for-change request waits by design: its time would read as slowness to the
    // latency panels and alerts.
    if !held {
        metrics::histogram!(REQUEST_DURATION_SECONDS, "endpoint" => endpoint)
            .record(latency.as_secs_f64());
    }
    metrics::histogram!(RESPONSE_SIZE_BYTES, "endpoint" => endpoint).record(bytes as f64);
    tracing::info!(
        target: "imds::request",
        request_id,
        method = %method,
        path = %path,
        api_version = api_version_raw,
        format = format_label,
        status = status.as_u16(),
        latency_us = latency.as_micros() as u64,
        response_bytes = bytes,
        caller = %caller,
        "request served"
    );
    response
}

/// Holds the in-flight gauge up while a request is served, and brings it down even when the
/// client goes away and the request future is dropped.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(REQUESTS_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}
