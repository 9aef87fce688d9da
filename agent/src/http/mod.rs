//! The metadata API: routes, the checks in front of them, and the count layer around them.
//!
//! Request flow: `connections.rs` (bounded connections) -> `count.rs` (request id, Server header,
//! metrics, request event) -> `fault.rs` (the operator's injected latency or errors, off by
//! default) -> `guard.rs` (X-Forwarded-For, rate limit, Metadata header) -> `routes.rs` (query
//! validation, document lookup) -> `render.rs` (JSON or text). The three stages in front of the
//! routes run as one function ([`MetadataApi::answer`]), called by the connection's service.

pub(crate) mod connections;
pub(crate) mod count;
pub(crate) mod error;
pub(crate) mod fault;
pub(crate) mod guard;
pub(crate) mod parser_errors;
pub(crate) mod query;
pub(crate) mod render;
pub(crate) mod request_metrics;
pub(crate) mod routes;
pub(crate) mod wait_for_change;

use crate::metadata::MetadataStore;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use fault::Faults;
use guard::RateLimit;
use std::sync::Arc;
use tower::ServiceExt;

/// What the handlers share, behind one `Arc`: axum clones the state for every request (each
/// `State` extractor), and cloning five shared parts one by one showed in the request path's
/// profile (BENCHMARKS.md).
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<SharedState>);

impl AppState {
    pub(crate) fn new(shared: SharedState) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub(crate) struct SharedState {
    pub store: Arc<MetadataStore>,
    /// `None` when the rate limit is off.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// The operator's fault switch (off unless set through the admin API).
    pub faults: Arc<Faults>,
    /// Bounds of held `wait-for-change` requests, and the shutdown that releases them.
    pub held: Arc<wait_for_change::HeldRequests>,
    /// Where each request's INFO event is written; `None` when the log level leaves it out.
    pub request_log: Option<crate::logs::writer::request_log::RequestLog>,
}

/// The metadata API: the stages in front of the routes, and the routes.
#[derive(Debug)]
pub(crate) struct MetadataApi {
    state: AppState,
    routes: Router,
}

impl MetadataApi {
    pub(crate) fn new(state: AppState) -> Self {
        MetadataApi {
            routes: routes(state.clone()),
            state,
        }
    }

    /// Count, fault switch and guard, in that order, then the route. A plain call rather than an
    /// axum `from_fn` layer: that layer cloned its state and the routes behind it and boxed a
    /// future for every request, which showed in the request path's profile (BENCHMARKS.md).
    pub(crate) async fn answer(&self, request: Request) -> Response {
        let state = &*self.state;
        count::observe(request, state.request_log.as_ref(), |request| async move {
            if let Some(injected) = fault::inject(&state.faults).await {
                return injected;
            }
            match guard::admit(state, &request) {
                Ok(()) => (self.routes.clone().oneshot(request).await)
                    .unwrap_or_else(|never| match never {}),
                Err(error) => error.into_response(),
            }
        })
        .await
    }
}

/// The routes alone: the stages in front of them are [`MetadataApi::answer`]'s.
fn routes(state: AppState) -> Router {
    // `get` alone would answer HEAD too; the contract is GET only.
    let instance = || {
        get(routes::instance)
            .head(routes::method_not_allowed)
            .fallback(routes::method_not_allowed)
    };
    Router::new()
        .route("/metadata/instance", instance())
        .route("/metadata/instance/", instance())
        .route("/metadata/instance/{*path}", instance())
        .route(
            "/metadata/versions",
            get(routes::versions)
                .head(routes::method_not_allowed)
                .fallback(routes::method_not_allowed),
        )
        .route("/metadata/identity", any(routes::identity))
        .route("/metadata/identity/{*path}", any(routes::identity))
        .route("/metadata/attested", any(routes::attested))
        .route("/metadata/attested/{*path}", any(routes::attested))
        .route("/metadata/loadbalancer", any(routes::load_balancer))
        .route(
            "/metadata/scheduledevents",
            get(routes::scheduled_events)
                .head(routes::method_not_allowed)
                .fallback(routes::method_not_allowed),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// A JSON response body with Azure's content type.
pub(crate) fn json_body(body: impl Into<axum::body::Bytes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.into(),
    )
}

pub(crate) use service::text::truncate;
