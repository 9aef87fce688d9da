//! The one back-off policy of the project, for everything that retries a remote party (the
//! shipper's Kafka producer, the upstream metadata poller, the collector's table writes):
//! exponential from a first delay to a cap, with jitter so that a fleet that failed together
//! does not retry in step, and never giving up by itself (the caller decides when a failure is
//! permanent or the process is stopping). backon's builder, used as an iterator of delays.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Delays `first`, about `2 * first`, ... up to `max`, each plus a random share of itself.
pub fn backoff(first: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_never_ends() {
        let delays: Vec<Duration> = backoff(Duration::from_millis(100), Duration::from_secs(1))
            .take(50)
            .collect();
        assert_eq!(delays.len(), 50);
        // Jitter adds at most the delay itself.
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(200));
        assert!(delays[1] >= Duration::from_millis(200) && delays[1] < Duration::from_millis(400));
        assert!(delays[49] >= Duration::from_secs(1) && delays[49] < Duration::from_secs(2));
        // Two fleets of one do not wait in step.
        let other: Vec<Duration> = backoff(Duration::from_millis(100), Duration::from_secs(1))
            .take(50)
            .collect();
        assert_ne!(delays, other);
    }
}
