//! Compaction inside the consuming collector (`--compact-every`): `collector compact` with its
//! defaults, run periodically, and what it found exported on `/metrics` (warm feeds hot):
//!
//! - `collector_log_patterns_new_total{cluster, level}`: patterns new to their cluster (first
//!   mined, or not seen for `NOVELTY_DAYS`), and `collector_log_pattern_lines_total{cluster,
//!   level}`: lines given a pattern id. No text in their labels: clusters x levels series.
//! - `collector_new_log_pattern_info{cluster, level, pattern_id, template, example}`, valued at
//!   the unix time it was found: the [`NEWEST_KEPT`] newest new patterns, the text the
//!   new-pattern alert's annotations quote (`dashboards/alerts.yml`). At most that many series,
//!   each label value cut to [`LABEL_CHARS`] characters.
//!
//! A run that fails is logged and counted (`collector_compactions_total{outcome="error"}`) and
//! the next one tries again; consuming is not affected.

use crate::config::{CompactArgs, Config};
use crate::metrics::{
    COMPACTIONS_TOTAL, LOG_PATTERN_LINES_TOTAL, LOG_PATTERNS_NEW_TOTAL, NEW_LOG_PATTERN_INFO,
};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warm_table::rollup::patterns::NewPattern;

/// New patterns whose text `/metrics` shows.
pub(crate) const NEWEST_KEPT: usize = 50;

/// Longest label value of the info series, in characters.
pub(crate) const LABEL_CHARS: usize = 200;

/// The newest patterns new to their cluster, with the unix time each was found.
#[derive(Debug, Default, Clone)]
pub(crate) struct NewestPatterns(Arc<Mutex<VecDeque<(NewPattern, f64)>>>);

impl NewestPatterns {
    fn record(&self, found: &[NewPattern], at: f64) {
        let Ok(mut newest) = self.0.lock() else {
            return;
        };
        for pattern in found {
            newest.push_back((pattern.clone(), at));
            if newest.len() > NEWEST_KEPT {
                newest.pop_front();
            }
        }
    }

    /// Appends the info series in Prometheus' text format.
    pub(crate) fn render(&self, text: &mut String) {
        let Ok(newest) = self.0.lock() else {
            return;
        };
        if newest.is_empty() {
            return;
        }
        let _ = writeln!(
            text,
            "# HELP {NEW_LOG_PATTERN_INFO} The newest log patterns new to their cluster, valued at the unix time they were found.\n# TYPE {NEW_LOG_PATTERN_INFO} gauge"
        );
        for (pattern, at) in newest.iter() {
            let _ = writeln!(
                text,
                r#"{NEW_LOG_PATTERN_INFO}{{cluster="{}",level="{}",pattern_id="{}",template="{}",example="{}"}} {at}"#,
                label(&pattern.cluster),
                label(&pattern.level),
                pattern.pattern_id,
                label(&pattern.template),
                label(&pattern.example),
            );
        }
    }
}

/// A label value: at most [`LABEL_CHARS`] characters, escaped as the text format wants.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(LABEL_CHARS * 2));
    for c in value.chars().take(LABEL_CHARS) {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Compacts the table every `every` until `shutdown`, exporting what each run finds.
pub(crate) async fn every(
    config: Config,
    every: Duration,
    newest: NewestPatterns,
    shutdown: CancellationToken,
) {
    let args = CompactArgs::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = chrono::Utc::now();
        let options = args.options(&config.out, now);
        let run = warm_table::compact::run(&options);
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            result = run => result,
        };
        match result {
            Ok(report) => {
                metrics::counter!(COMPACTIONS_TOTAL, "outcome" => "ok").increment(1);
                let patterns = &report.rollups.patterns;
                for new in &patterns.new {
                    metrics::counter!(LOG_PATTERNS_NEW_TOTAL, "cluster" => new.cluster.clone(), "level" => new.level.clone())
                        .increment(1);
                }
                for ((cluster, level), lines) in &patterns.lines {
                    metrics::counter!(LOG_PATTERN_LINES_TOTAL, "cluster" => cluster.clone(), "level" => level.clone())
                        .increment(u64::try_from(*lines).unwrap_or(0));
                }
                newest.record(&patterns.new, now.timestamp_millis() as f64 / 1000.0);
                tracing::info!("compacted: {}", crate::maintenance::summary(&report));
            }
            Err(error) => {
                metrics::counter!(COMPACTIONS_TOTAL, "outcome" => "error").increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "compaction failed; the next run tries again"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_series_are_escaped_cut_and_bounded() {
        let newest = NewestPatterns::default();
        let pattern = |n: i64| NewPattern {
            cluster: "east".to_owned(),
            level: "ERROR".to_owned(),
            pattern_id: n,
            template: format!("bad \"quote\" \\ and\nnewline {}", "x".repeat(500)),
            example: "e".to_owned(),
            first_seen: chrono::DateTime::UNIX_EPOCH,
        };
        let found: Vec<NewPattern> = (1..=NEWEST_KEPT as i64 + 5).map(pattern).collect();
        newest.record(&found, 1_700_000_000.5);
        let mut text = String::new();
        newest.render(&mut text);
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(series.len(), NEWEST_KEPT);
        assert!(series[0].contains(r#"pattern_id="6""#), "{}", series[0]);
        assert!(
            series[0].contains(r#"template="bad \"quote\" \\ and\nnewline xxx"#),
            "{}",
            series[0]
        );
        assert!(
            series[0].ends_with(r#"example="e"} 1700000000.5"#),
            "{}",
            series[0]
        );
        let template = series[0]
            .split("template=\"")
            .nth(1)
            .and_then(|rest| rest.split("\",example=").next())
            .unwrap_or_default();
        assert!(template.len() < LABEL_CHARS + 10, "{template}");
    }
}
