//! Change notification, beyond Azure (GCP's metadata server has it): every instance answer carries
//! the `ETag` of the document version it came from, `If-None-Match` with that tag is a 304, and
//! `wait-for-change=true[&last-etag=<tag>][&timeout-sec=<n>]` holds the request until the caller's
//! document is no longer `last-etag` (without one: no longer the version current on arrival), then
//! answers it like any other request. At the timeout, or when the agent shuts down, the current
//! document is answered (same tag: nothing changed).
//!
//! Bounds: at most `--max-held-requests` are held at once (more get 429 with `Retry-After`), none
//! longer than `--max-wait`. A held request took one rate-limit token on arrival and takes none
//! while it waits, and its wait is kept out of the latency histogram (`count.rs`).

use super::error::ApiError;
use super::query::WaitForChange;
use crate::metadata::{Document, Lookup, MetadataStore};
use crate::metrics::HELD_REQUESTS;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Bounds on held `wait-for-change` requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitLimits {
    /// `wait-for-change` requests held at once at most.
    pub max_held: usize,
    /// Longest a `wait-for-change` request is held.
    pub max_wait: Duration,
}

/// The held requests' shared bounds and the shutdown signal that releases them.
#[derive(Debug)]
pub(crate) struct HeldRequests {
    slots: Arc<Semaphore>,
    limits: WaitLimits,
    shutdown: CancellationToken,
}

impl HeldRequests {
    pub(crate) fn new(limits: WaitLimits, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(HeldRequests {
            slots: Arc::new(Semaphore::new(limits.max_held)),
            limits,
            shutdown,
        })
    }
}

/// The caller's document now.
pub(crate) fn current(store: &MetadataStore, caller: IpAddr) -> Result<Arc<Document>, ApiError> {
    match store.lookup(caller) {
        Lookup::Found(document) => Ok(document),
        Lookup::NoDocumentForCaller => Err(ApiError::NoDocumentForCaller(caller)),
        Lookup::NotLoadedYet => Err(ApiError::NotLoadedYet),
    }
}

/// Waits until the caller's document differs from the one it has, the timeout, or shutdown.
pub(crate) async fn wait(
    held: &HeldRequests,
    store: &MetadataStore,
    caller: IpAddr,
    wait: &WaitForChange,
) -> Result<Arc<Document>, ApiError> {
    let _slot = Arc::clone(&held.slots)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyHeld(held.limits.max_held))?;
    let _held = HeldGauge::enter();
    let timeout = wait
        .timeout
        .unwrap_or(held.limits.max_wait)
        .min(held.limits.max_wait);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = store.changes();
    changes.borrow_and_update();
    let mut document = current(store, caller)?;
    let known = unquoted(wait.last_etag.as_deref().unwrap_or(document.etag())).to_owned();
    loop {
        if unquoted(document.etag()) != known {
            return Ok(document);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(document);
                }
                changes.borrow_and_update();
                document = current(store, caller)?;
            }
            () = tokio::time::sleep_until(deadline) => return Ok(document),
            () = held.shutdown.cancelled() => return Ok(document),
        }
    }
}

/// Holds `imds_held_requests` up while a request waits, also when its client goes away.
struct HeldGauge;

impl HeldGauge {
    fn enter() -> Self {
        metrics::gauge!(HELD_REQUESTS).increment(1.0);
        HeldGauge
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        metrics::gauge!(HELD_REQUESTS).decrement(1.0);
    }
}

/// Whether an `If-None-Match` header value names this tag (a list, `*`, weak tags all accepted).
pub(crate) fn matches_if_none_match(header: &str, etag: &str) -> bool {
    let etag = unquoted(etag);
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || unquoted(candidate.strip_prefix("W/").unwrap_or(candidate)) == etag
    })
}

fn unquoted(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        assert!(matches_if_none_match("\"ab\"", "\"ab\""));
        assert!(matches_if_none_match("W/\"ab\"", "\"ab\""));
        assert!(matches_if_none_match("\"x\", \"ab\"", "\"ab\""));
        assert!(matches_if_none_match("*", "\"ab\""));
        assert!(!matches_if_none_match("\"abc\"", "\"ab\""));
        assert!(!matches_if_none_match("", "\"ab\""));
    }
}
