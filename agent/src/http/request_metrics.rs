//! The metadata API's request metrics (`imds_requests_total`, `imds_request_duration_seconds`,
//! `imds_response_size_bytes`), counted per worker thread and summed when Prometheus scrapes.
//!
//! Why not the `metrics` handles directly: with two worker threads, every request wrote the
//! same few cache lines from both cores (the counter's value and generation, and each histogram's
//! shared bucket block: a `fetch_add`, a `fetch_or` and an epoch pin per sample). That cost about
//! 1 µs of CPU per request with two workers and nothing measurable with one (BENCHMARKS.md). Here
//! each thread counts into a shard of its own, behind a lock only the scrape ever contends for.
//!
//! At scrape time the counter's totals are handed to the recorder (`Counter::absolute`), so
//! the exporter renders it as before; the two histograms are rendered here, in the Prometheus text
//! format, with the buckets of `crate::metrics` (the exporter has no way to take bucket counts).
//! Labels are bounded by construction (`count.rs`), so the shards are too. The shards' maps hash
//! with foldhash, not the standard library's SipHash: keys are our own constants, never a
//! caller's bytes, and SipHash over three label strings was a visible share of each request.

use crate::metrics::{
    DURATION_BUCKETS, DURATION_HELP, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, RESPONSE_SIZE_BYTES,
    SIZE_BUCKETS, SIZE_HELP,
};
use foldhash::HashMap;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// `(endpoint, api_version, format, status)`.
pub(crate) type Labels = (&'static str, &'static str, &'static str, u16);

/// Off until the Prometheus recorder is installed: with metrics disabled nothing is counted.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Every thread's shard, for the scrape to sum.
static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());

thread_local! {
    static SHARD: Arc<Mutex<Shard>> = {
        let shard = Arc::default();
        lock(&SHARDS).push(Arc::clone(&shard));
        shard
    };
}

/// Counting a request cannot fail halfway, so a poisoned lock holds whole counts.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts counting (called once the recorder is installed).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

#[derive(Debug, Default)]
struct Shard {
    responses: HashMap<Labels, u64>,
    /// By endpoint: (duration, size).
    histograms: HashMap<&'static str, (Histogram, Histogram)>,
}

/// One histogram series: a count per bucket (not cumulative; the last is above every bound),
/// the sum and the count of observations.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn record(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        // Prometheus buckets are "less than or equal to".
        self.buckets[bounds.partition_point(|&bound| bound < value)] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn add(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; other.buckets.len()];
        }
        for (total, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *total += n;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Counts one response of the API; `latency` is `None` for a request that is not timed (a held
/// wait-for-change request).
pub(crate) fn count(labels: Labels, latency: Option<Duration>, bytes: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    SHARD.with(|shard| {
        let mut shard = lock(shard);
        *shard.responses.entry(labels).or_default() += 1;
        let (duration, size) = shard.histograms.entry(labels.0).or_default();
        if let Some(latency) = latency {
            duration.record(DURATION_BUCKETS, latency.as_secs_f64());
        }
        size.record(SIZE_BUCKETS, bytes as f64);
    });
}

/// Counts a response written by the connection layer (an error hyper itself produced): in
/// `imds_requests_total` only, as it has no handler time or body of interest.
pub(crate) fn count_response(labels: Labels) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    SHARD.with(|shard| *lock(shard).responses.entry(labels).or_default() += 1);
}

/// Sums the shards: hands `imds_requests_total` to the recorder and appends the two histograms'
/// exposition text to `page`.
pub(crate) fn scrape(page: &mut String) {
    let mut responses: BTreeMap<Labels, u64> = BTreeMap::new();
    let mut histograms: BTreeMap<&'static str, (Histogram, Histogram)> = BTreeMap::new();
    for shard in lock(&SHARDS).iter() {
        let shard = lock(shard);
        for (labels, n) in &shard.responses {
            *responses.entry(*labels).or_default() += n;
        }
        for (endpoint, (duration, size)) in &shard.histograms {
            let (total_duration, total_size) = histograms.entry(endpoint).or_default();
            total_duration.add(duration);
            total_size.add(size);
        }
    }
    for ((endpoint, api_version, format, status), n) in responses {
        metrics::counter!(REQUESTS_TOTAL,
            "endpoint" => endpoint, "api_version" => api_version,
            "format" => format, "status" => status.to_string())
        .absolute(n);
    }
    let durations = histograms.iter().map(|(e, (d, _))| (*e, d));
    render(
        page,
        REQUEST_DURATION_SECONDS,
        DURATION_HELP,
        DURATION_BUCKETS,
        durations,
    );
    let sizes = histograms.iter().map(|(e, (_, s))| (*e, s));
    render(page, RESPONSE_SIZE_BYTES, SIZE_HELP, SIZE_BUCKETS, sizes);
}

/// One histogram family in the Prometheus text format; nothing before its first observation.
fn render<'a>(
    page: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    series: impl Iterator<Item = (&'static str, &'a Histogram)>,
) {
    let mut series = series.filter(|(_, h)| h.count > 0).peekable();
    if series.peek().is_none() {
        return;
    }
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (endpoint, histogram) in series {
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(&histogram.buckets) {
            cumulative += n;
            let _ = writeln!(
                page,
                "{name}_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            page,
            "{name}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\n\
             {name}_sum{{endpoint=\"{endpoint}\"}} {}\n\
             {name}_count{{endpoint=\"{endpoint}\"}} {}",
            histogram.count, histogram.sum, histogram.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let bounds = [0.5, 1.0, 2.5];
        let mut a = Histogram::default();
        for value in [0.1, 0.5, 1.0, 3.0] {
            a.record(&bounds, value);
        }
        let mut b = Histogram::default();
        b.record(&bounds, 2.0);
        let mut total = Histogram::default();
        total.add(&a);
        total.add(&b);
        let mut page = String::new();
        let empty = Histogram::default();
        render(
            &mut page,
            "x_seconds",
            "Help.",
            &bounds,
            [("/a", &total), ("/b", &empty)].into_iter(),
        );
        assert_eq!(
            page,
            "# HELP x_seconds Help.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{endpoint=\"/a\",le=\"0.5\"} 2\n\
             x_seconds_bucket{endpoint=\"/a\",le=\"1\"} 3\n\
             x_seconds_bucket{endpoint=\"/a\",le=\"2.5\"} 4\n\
             x_seconds_bucket{endpoint=\"/a\",le=\"+Inf\"} 5\n\
             x_seconds_sum{endpoint=\"/a\"} 6.6\n\
             x_seconds_count{endpoint=\"/a\"} 5\n"
        );
        let mut nothing = String::new();
        render(
            &mut nothing,
            "x_seconds",
            "Help.",
            &bounds,
            [("/b", &empty)].into_iter(),
        );
        assert_eq!(nothing, "", "no series before the first observation");
    }
}
