//! The latency sketch kept in every rollup row: a DDSketch (sketches-ddsketch, the port of
//! Datadog's Go implementation), mergeable, so an hour's sketches add up to a day's or a
//! fleet's. Any quantile it answers is within [`RELATIVE_ERROR`] of the exact value at that rank
//! (the value whose rank is `q x (count - 1)`), for any number of merges.
//!
//! Stored as its serde JSON in a `binary` column: the crate exposes its bins only through serde,
//! and Parquet's zstd takes the repetition out of the text.

use anyhow::Context;
use sketches_ddsketch::Config;
pub use sketches_ddsketch::DDSketch;

/// Relative error of every quantile a sketch answers: 1%.
pub const RELATIVE_ERROR: f64 = 0.01;

/// Bins a sketch grows to at most. At 1% error, 2,048 bins cover latencies from 1 µs to over
/// 10^17 µs: a sketch never collapses bins for real latencies.
const MAX_BINS: u32 = 2048;

/// Smallest value told apart from zero.
const MIN_VALUE: f64 = 1e-9;

/// An empty sketch with the project's settings (all sketches must share them to merge).
pub fn new() -> DDSketch {
    DDSketch::new(Config::new(RELATIVE_ERROR, MAX_BINS, MIN_VALUE))
}

/// The sketch as stored.
pub fn to_bytes(sketch: &DDSketch) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(sketch)?)
}

/// A stored sketch.
pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<DDSketch> {
    serde_json::from_slice(bytes).context("a rollup's latency sketch does not parse")
}

/// `into` with `other` added: both must have the project's settings.
pub fn merge(into: &mut DDSketch, other: &DDSketch) -> anyhow::Result<()> {
    into.merge(other)
        .map_err(|error| anyhow::anyhow!("merging latency sketches: {error}"))
}

/// The `q` quantile (0 to 1), `None` for an empty sketch.
pub fn quantile(sketch: &DDSketch, q: f64) -> anyhow::Result<Option<f64>> {
    sketch
        .quantile(q)
        .map_err(|error| anyhow::anyhow!("quantile {q}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact value at rank `q x (count - 1)` of sorted `values`, as the sketch defines it.
    fn exact(sorted: &[u64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64
    }

    #[test]
    fn quantiles_are_within_the_stated_error_of_the_exact_ones_after_merges() {
        // Latencies over five orders of magnitude, in 24 hourly sketches merged into a day's,
        // through their stored form.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut all = Vec::new();
        let mut day = new();
        for _hour in 0..24 {
            let mut hour = new();
            for _ in 0..5_000 {
                let latency = 1 + next() % 10u64.pow(1 + (next() % 5) as u32);
                hour.add(latency as f64);
                all.push(latency);
            }
            let stored = to_bytes(&hour).unwrap_or_else(|e| panic!("{e}"));
            let read = from_bytes(&stored).unwrap_or_else(|e| panic!("{e}"));
            merge(&mut day, &read).unwrap_or_else(|e| panic!("{e}"));
        }
        all.sort_unstable();
        assert_eq!(day.count(), all.len());
        for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let estimate = quantile(&day, q)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("empty"));
            let exact = exact(&all, q);
            assert!(
                (estimate - exact).abs() <= RELATIVE_ERROR * exact,
                "q {q}: {estimate} against {exact}"
            );
        }
    }

    #[test]
    fn an_empty_sketch_has_no_quantile_and_junk_does_not_parse() {
        assert_eq!(
            quantile(&new(), 0.9).unwrap_or_else(|e| panic!("{e}")),
            None
        );
        assert!(from_bytes(b"{\"not\":1}").is_err());
    }
}
