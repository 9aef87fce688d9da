//! The metadata API's handlers: `/metadata/instance[/<path>]` and `/metadata/versions`, plus the
//! JSON answers for unknown paths and methods. Header rules and the rate limit are checked
//! before these run (`guard.rs`); counting and the request log event wrap them (`count.rs`).

use super::error::ApiError;
use super::query::{Format, ImdsQuery};
use super::wait_for_change::{self, current, matches_if_none_match};
use super::{AppState, json_body, render};
use crate::api_version;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

const INSTANCE_PREFIX: &str = "/metadata/instance";

/// `GET /metadata/instance[/<path>]?api-version=<v>[&format=json|text][&extended=true]`
pub(crate) async fn instance(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let valid = with_query(&request, ImdsQuery::validate)?;
    let path = request.uri().path();
    let segments = segments(path)?;
    let caller = caller_of(&request);
    let document = match &valid.wait_for_change {
        None => current(&state.store, caller)?,
        Some(wait) => wait_for_change::wait(&state.held, &state.store, caller, wait).await?,
    };
    let etag = document.etag_header();
    let visible = document.at_version(valid.version_index);
    // The path is checked first: a path the document does not have is a 404 whatever the tag.
    let node = render::walk(visible, &segments, valid.extended, path)?;
    let not_modified = valid.wait_for_change.is_none()
        && request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches_if_none_match(v, document.etag()));
    if not_modified {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag);
        return Ok(response);
    }
    // Rendered once for every caller asking the same at once (a large document would otherwise
    // be held once per caller); a leaf asked as JSON is refused before any rendering.
    if valid.format == Format::Json && !node.is_container() {
        return Err(ApiError::LeafNeedsText);
    }
    let key = || {
        // Each segment with its length: decoded segments may hold any character, `/` included.
        use std::fmt::Write;
        let mut key = format!(
            "{}|{}|{}",
            valid.version_index,
            valid.extended,
            valid.format.as_str()
        );
        for segment in &segments {
            let _ = write!(key, "|{}:{segment}", segment.len());
        }
        key
    };
    let body = document.shared_answer(key, || {
        render::render(&node, valid.format)
            .unwrap_or_default()
            .into()
    });
    let mut response = match valid.format {
        Format::Json => json_body(body).into_response(),
        Format::Text => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
    };
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

/// `GET /metadata/versions`: the supported api-versions; needs no api-version itself.
pub(crate) async fn versions(request: Request) -> Result<Response, ApiError> {
    if let Err(duplicate @ ApiError::DuplicateParameter(_)) =
        with_query(&request, ImdsQuery::validate_version)
    {
        return Err(duplicate);
    }
    let body = serde_json::json!({ "apiVersions": api_version::SUPPORTED });
    Ok(json_body(body.to_string().into_bytes()).into_response())
}

/// Any path the API does not have.
pub(crate) async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(request.uri().path().to_owned())
}

/// Any method but GET on a known path (HEAD included: the contract is GET only).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `/metadata/identity/...`: this host has no managed identities. Azure answers a VM without one
/// with this 400; a 404 would read as "IMDS is updating" and identity SDKs would retry for 18-95 s.
pub(crate) async fn identity() -> ApiError {
    ApiError::IdentityNotFound
}

/// `/metadata/loadbalancer`: no Standard load balancer in front of this host's VMs.
pub(crate) async fn load_balancer() -> ApiError {
    ApiError::NoLoadBalancer
}

/// `/metadata/attested/...`: signed documents need Azure's certificates; none here.
pub(crate) async fn attested() -> ApiError {
    ApiError::NoAttestedData
}

/// `/metadata/scheduledevents`: what Azure answers a VM with no maintenance scheduled. Nothing
/// is ever scheduled by this agent, so that answer is the truth.
pub(crate) async fn scheduled_events(request: Request) -> Result<Response, ApiError> {
    with_query(&request, ImdsQuery::validate_version)?;
    let body = serde_json::json!({ "DocumentIncarnation": 0, "Events": [] });
    Ok(json_body(body.to_string().into_bytes()).into_response())
}

/// Applies `check` to the query the count layer parsed (or parses it, when the handler runs
/// without that layer).
fn with_query<T>(request: &Request, check: impl Fn(&ImdsQuery) -> T) -> T {
    match request.extensions().get::<ImdsQuery>() {
        Some(query) => check(query),
        None => check(&ImdsQuery::parse(request.uri().query())),
    }
}

/// The caller's address, IPv4-mapped IPv6 folded to IPv4 so per-caller files match either way.
pub(crate) fn caller_of(request: &Request) -> std::net::IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
}

/// Splits the part of the path after `/metadata/instance` into percent-decoded segments. One
/// trailing slash is allowed; an empty segment (`a//b`) or bad UTF-8 names nothing.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    let not_found = || ApiError::NotFound(path.to_owned());
    let rest = path.strip_prefix(INSTANCE_PREFIX).ok_or_else(not_found)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| not_found())?;
            if decoded.is_empty() {
                Err(not_found())
            } else {
                Ok(decoded.into_owned())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_decoded_segments() {
        assert_eq!(
            segments("/metadata/instance").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            segments("/metadata/instance/").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            segments("/metadata/instance/compute/vmId/").unwrap(),
            ["compute", "vmId"]
        );
        assert_eq!(segments("/metadata/instance/a%20b").unwrap(), ["a b"]);
        assert!(segments("/metadata/instance/a//b").is_err());
        assert!(segments("/metadata/instance/%FF").is_err());
    }
}
