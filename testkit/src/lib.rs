//! The integration tests' harness, shared by every crate's tests (a dev-dependency only): the
//! real `agent` and `collector` binaries started on port 0 ([`agent`], [`collector`]), the Kafka
//! broker `scripts/kafka` runs ([`kafka`]), a moto S3 server ([`s3`]), the agent's local log and
//! shipper checkpoint read back ([`agent_log`]), Prometheus pages parsed ([`scrape`]), raw HTTP
//! ([`http`]), a tmpfs that fills up or turns read-only ([`disk`]), certificates ([`tls`]), and the one way a test waits
//! for something: [`eventually`].
//!
//! A failed `unwrap` here is a failed test, which is what a harness should do with the unexpected.
#![allow(clippy::unwrap_used)]
#![warn(missing_docs, unreachable_pub)]

pub mod agent;
pub mod agent_log;
pub mod collector;
pub mod disk;
pub mod http;
pub mod kafka;
pub mod mutation;
pub mod process;
pub mod s3;
pub mod scrape;
pub mod tls;

pub use agent::{API_VERSION, Agent, AgentBuilder};
pub use collector::Collector;
pub use scrape::Scrape;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every file under `dir`, at any depth, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(next) = dirs.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// How often [`eventually`] and [`eventually_async`] look again.
const POLL: Duration = Duration::from_millis(50);

/// What a probe of [`eventually`] says: `bool` (has it happened?) or `Option<T>` (the value, once
/// it is there).
pub trait Outcome {
    /// What [`eventually`] returns.
    type Value;
    /// The value, once the awaited thing has happened.
    fn happened(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn happened(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn happened(self) -> Option<T> {
        self
    }
}

/// Polls `probe` until it says the awaited thing happened and returns its value; fails the test,
/// naming `what`, if that does not happen within `within`.
pub fn eventually<O: Outcome>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> O,
) -> O::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().happened() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] for an async probe, sleeping on the test's runtime between looks.
pub async fn eventually_async<O: Outcome, F: Future<Output = O>>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> O::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await.happened() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Checks that something does not happen: `probe` must hold at every look for the whole of
/// `period` (looked at every few milliseconds and once more at the end); fails the test, naming
/// `what`, at the first look where it does not. The one place a test waits out time on purpose.
pub fn stays(what: &str, period: Duration, mut probe: impl FnMut() -> bool) {
    let end = Instant::now() + period;
    loop {
        let last = Instant::now() >= end;
        assert!(
            probe(),
            "{what} stopped holding before {period:?} had passed"
        );
        if last {
            return;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
}

/// [`stays`] for an async probe, sleeping on the test's runtime between looks.
pub async fn stays_async<F: Future<Output = bool>>(
    what: &str,
    period: Duration,
    mut probe: impl FnMut() -> F,
) {
    let end = Instant::now() + period;
    loop {
        let last = Instant::now() >= end;
        assert!(
            probe().await,
            "{what} stopped holding before {period:?} had passed"
        );
        if last {
            return;
        }
        tokio::time::sleep(POLL.min(end.saturating_duration_since(Instant::now()))).await;
    }
}

/// Runs a future to completion on the calling thread, from a plain (non-async) test.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `future` to its end on a runtime of its own, on a thread of its own (so the caller may be
/// a plain test or inside a runtime).
pub fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
    .join()
    .unwrap()
}

/// Parquet files directly in `dir` (not hidden ones: writers' temporary files start with `.`),
/// in a table's log or not; 0 when `dir` does not exist.
pub fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.ends_with(".parquet") && !name.starts_with('.')
            })
            .count()
    })
}
