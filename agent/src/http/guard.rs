//! Checks every request passes before a handler sees it, in Azure's order: no proxy
//! (`X-Forwarded-For`), then the per-caller rate limit, then the `Metadata: true` header on
//! `/metadata/*`.

use super::SharedState;
use super::error::ApiError;
use super::routes::caller_of;
use crate::metrics::THROTTLED_REQUESTS_TOTAL;
use axum::extract::Request;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Per-caller token bucket: `rps` per second with a burst of `rps`, keyed by caller address.
#[derive(Debug)]
pub(crate) struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    rps: u32,
}

impl RateLimit {
    pub(crate) fn new(rps: NonZeroU32) -> Arc<Self> {
        Arc::new(RateLimit {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rps)),
            rps: rps.get(),
        })
    }

    /// `Err` with the whole seconds to wait (at least 1) when the caller is over the limit.
    fn check(&self, caller: IpAddr) -> Result<(), u64> {
        self.limiter.check_key(&caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Retry-After takes whole seconds: round up, and never say 0.
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }

    /// Forgets callers that have been quiet, so a scan of many addresses cannot grow memory.
    pub(crate) fn spawn_cleanup(self: &Arc<Self>, shutdown: CancellationToken) {
        let limit = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        limit.limiter.retain_recent();
                        limit.limiter.shrink_to_fit();
                    }
                }
            }
        });
    }
}

/// The checks: `Err` is the answer to send instead of the route's.
pub(crate) fn admit(state: &SharedState, request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    if headers.contains_key("x-forwarded-for") {
        return Err(ApiError::ForwardedFor);
    }
    let path = request.uri().path();
    if path != "/metadata" && !path.starts_with("/metadata/") {
        return Ok(());
    }
    if let Some(limit) = &state.rate_limit {
        limit
            .check(caller_of(request))
            .map_err(|retry_after_secs| {
                metrics::counter!(THROTTLED_REQUESTS_TOTAL).increment(1);
                ApiError::Throttled {
                    limit: limit.rps,
                    retry_after_secs,
                }
            })?;
    }
    // Azure's clients send `true` and `True`; the comparison ignores case. Any other value, or
    // bytes that are not text, is the same as no header.
    let metadata_ok = headers
        .get_all("metadata")
        .iter()
        .next()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !metadata_ok {
        return Err(ApiError::MissingMetadataHeader);
    }
    Ok(())
}
