//! Every error the metadata API answers with: a status code and a JSON body `{"error": "..."}`.
//! Bad input is always a 4xx with a message a caller can act on; nothing a caller sends is a 5xx
//! (the only 500 is the operator's injected fault).

use crate::api_version;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Longest path echoed back in an error body: a 100 KB path is refused, not mirrored.
const MAX_ECHOED_PATH: usize = 256;

/// An error response of the metadata API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The `Metadata: true` header is missing or has another value.
    #[error("Bad request. Required metadata header not specified")]
    MissingMetadataHeader,
    /// The request carries `X-Forwarded-For`: it came through a proxy (anti-SSRF).
    #[error(
        "Bad request. Requests with an X-Forwarded-For header are not accepted: call the metadata service directly, not through a proxy"
    )]
    ForwardedFor,
    /// `api-version` is missing, malformed or not a supported version.
    #[error(
        "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds"
    )]
    InvalidApiVersion,
    /// The same query parameter was given more than once.
    #[error("Bad request. Query parameter '{0}' was given more than once")]
    DuplicateParameter(String),
    /// `format` is neither `json` nor `text`.
    #[error("Bad request. Unsupported format '{0}': use format=json or format=text")]
    InvalidFormat(String),
    /// More query parameters than the limit (`query.rs`'s `MAX_PARAMETERS`).
    #[error("Bad request. More than {0} query parameters")]
    TooManyParameters(usize),
    /// A parameter of this agent's extensions (`wait-for-change`, `timeout-sec`) has a bad value.
    #[error("Bad request. Unsupported value '{value}' for {name}: use {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// More `wait-for-change` requests are held than the agent allows (`--max-held-requests`).
    #[error("Too many requests: {0} wait-for-change requests are already held; retry later")]
    TooManyHeld(usize),
    /// `/metadata/identity/...` on a host without managed identities: Azure's answer on a VM
    /// without one, so identity SDKs give up at once instead of retrying for tens of seconds.
    #[error("Identity not found")]
    IdentityNotFound,
    /// `/metadata/loadbalancer` on a host with no load balancer metadata.
    #[error("No load balancer metadata is found. This agent does not serve load balancer metadata")]
    NoLoadBalancer,
    /// `/metadata/attested/...`: this agent cannot sign documents.
    #[error("Not found: attested data is not served by this metadata service")]
    NoAttestedData,
    /// `extended` is neither `true` nor `false`.
    #[error(
        "Bad request. Unsupported value '{0}' for extended: use extended=true or extended=false"
    )]
    InvalidExtended(String),
    /// A leaf value was asked for as JSON.
    #[error("Bad request. The requested path is a leaf value: use format=text to read it")]
    LeafNeedsText,
    /// No node at this path of the document.
    #[error("Not found: {}", truncate_for_echo(.0))]
    NotFound(String),
    /// No document is configured for this caller and there is no default document.
    #[error("Not found: no metadata document is configured for caller {0}")]
    NoDocumentForCaller(std::net::IpAddr),
    /// The source has not delivered a first document yet (upstream unreachable since start-up and
    /// no copy on disk). Not the caller's fault: 503 with `Retry-After`.
    #[error("Service unavailable: metadata has not been loaded yet")]
    NotLoadedYet,
    /// Any method but GET.
    #[error("Method not allowed: the metadata service answers GET only")]
    MethodNotAllowed,
    /// Over the per-caller rate limit.
    #[error("Too many requests: the limit is {limit} requests per second per caller")]
    Throttled { limit: u32, retry_after_secs: u64 },
    /// Failed on purpose by the operator's fault switch (`fault.rs`), never by anything a caller sent.
    #[error("Internal server error: injected by the operator's fault switch")]
    InjectedFault,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_)
            | ApiError::NoDocumentForCaller(_)
            | ApiError::NoLoadBalancer
            | ApiError::NoAttestedData => StatusCode::NOT_FOUND,
            ApiError::NotLoadedYet => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Throttled { .. } | ApiError::TooManyHeld(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InjectedFault => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::InvalidApiVersion => json!({
                "error": self.to_string(),
                "newest-versions": api_version::newest(3),
            }),
            // The identity endpoint's own error shape (OAuth 2.0's), which the SDKs parse.
            ApiError::IdentityNotFound => json!({
                "error": "invalid_request",
                "error_description": self.to_string(),
            }),
            _ => json!({ "error": self.to_string() }),
        };
        let mut response = (
            self.status(),
            super::json_body(body.to_string().into_bytes()),
        )
            .into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            ApiError::Throttled {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::NotLoadedYet | ApiError::TooManyHeld(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

fn truncate_for_echo(path: &str) -> String {
    if path.len() <= MAX_ECHOED_PATH {
        return path.to_owned();
    }
    format!(
        "{}... ({} bytes)",
        super::truncate(path, MAX_ECHOED_PATH),
        path.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_truncated_in_the_message() {
        let long = format!("/metadata/instance/{}", "é".repeat(500));
        let message = ApiError::NotFound(long.clone()).to_string();
        assert!(message.len() < 300, "{}", message.len());
        assert!(message.ends_with(&format!("... ({} bytes)", long.len())));
    }
}
