//! Fault injection, so alerts can be shown and tested on a live agent: added latency and a share
//! of requests failing with 500. Switched on the admin listener only (`PUT /fault` with its bearer
//! token), never the metadata port; off by default and after a restart (it lives in memory only).
//! While on, `imds_fault_latency_seconds` and `imds_fault_error_ratio` say so, and the switch
//! itself is logged at WARN so the warm store records when a fault was injected.

use super::error::ApiError;
use crate::metrics::{FAULT_ERROR_RATIO, FAULT_LATENCY_SECONDS};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest latency that can be injected: a minute is enough to trip any alert, and bounded so a
/// typo cannot park requests for hours.
pub(crate) const MAX_LATENCY_MS: u64 = 60_000;

/// What is injected. Both zero means off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// Added to every metadata API request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of metadata API requests answered with 500, from 0 to 1.
    #[serde(default)]
    pub error_ratio: f64,
}

impl FaultSpec {
    /// Refuses values outside their ranges, with a message an operator can act on.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!(
                "latency_ms must be at most {MAX_LATENCY_MS}, got {}",
                self.latency_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.error_ratio) {
            return Err(format!(
                "error_ratio must be between 0 and 1, got {}",
                self.error_ratio
            ));
        }
        Ok(())
    }

    pub(crate) fn is_off(&self) -> bool {
        self.latency_ms == 0 && self.error_ratio == 0.0
    }
}

/// The switch, shared by the metadata API (reads it per request) and the admin API (sets it).
#[derive(Debug, Default)]
pub(crate) struct Faults {
    latency_ms: AtomicU64,
    /// `f64` bits: lock-free reads on the request path.
    error_ratio_bits: AtomicU64,
}

impl Faults {
    pub(crate) fn new() -> Arc<Self> {
        let faults = Arc::new(Faults::default());
        faults.publish(FaultSpec::default());
        faults
    }

    pub(crate) fn current(&self) -> FaultSpec {
        FaultSpec {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            error_ratio: f64::from_bits(self.error_ratio_bits.load(Ordering::Relaxed)),
        }
    }

    /// Sets the fault (a validated spec); `FaultSpec::default()` switches it off.
    pub(crate) fn set(&self, spec: FaultSpec) {
        self.latency_ms.store(spec.latency_ms, Ordering::Relaxed);
        self.error_ratio_bits
            .store(spec.error_ratio.to_bits(), Ordering::Relaxed);
        self.publish(spec);
        if spec.is_off() {
            tracing::warn!(target: "imds::fault", "fault injection switched off");
        } else {
            tracing::warn!(target: "imds::fault", latency_ms = spec.latency_ms, error_ratio = spec.error_ratio, "fault injection switched on");
        }
    }

    fn publish(&self, spec: FaultSpec) {
        metrics::gauge!(FAULT_LATENCY_SECONDS).set(spec.latency_ms as f64 / 1000.0);
        metrics::gauge!(FAULT_ERROR_RATIO).set(spec.error_ratio);
    }
}

/// In front of the metadata API: waits the injected latency, then answers the injected share of
/// requests with a 500 (`Some`). Runs inside the count stage, so injected latency and errors show
/// in the hot-path metrics exactly as a real fault would.
pub(crate) async fn inject(faults: &Faults) -> Option<Response> {
    let spec = faults.current();
    if spec.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(spec.latency_ms)).await;
    }
    if spec.error_ratio > 0.0 && fastrand::f64() < spec.error_ratio {
        return Some(ApiError::InjectedFault.into_response());
    }
    None
}
