//! `--compact-every`: a consuming collector that also compacts exports the log patterns new to
//! each cluster (counters per cluster and level, and the newest ones' text for the alert's
//! annotations).

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use logrecord::{Level, LogRecord, Uuid};
use std::time::Duration;
use testkit::{Collector, kafka::brokers, kafka::create_topic, kafka::unique};

/// Yesterday-style closed hours of cluster `east`: per hour 20 errors "upstream <address>
/// refused" and 10 warnings "disk <n>% full", and 5 request events (no pattern).
fn lines(first_hour: i64, hours: i64, shapes: &[&str]) -> Vec<LogRecord> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
    let mut out = Vec::new();
    for hour in first_hour..first_hour + hours {
        for n in 0..35u64 {
            let at = start + ChronoDuration::hours(hour) + ChronoDuration::seconds(n as i64 * 60);
            let seq = hour as u64 * 100 + n;
            let (level, message) = match n {
                0..20 => (Level::Error, shapes[0].replace("{}", &n.to_string())),
                20..30 => (Level::Warn, shapes[1].replace("{}", &n.to_string())),
                _ => (Level::Info, "request".to_owned()),
            };
            let mut record = LogRecord::new(
                seq,
                Uuid::from_u64_pair(7, seq),
                at,
                level,
                "imds::upstream",
                message,
                "east",
                "m1",
            );
            if n >= 30 {
                record.path = Some("/metadata/instance".to_owned());
            }
            out.push(record);
        }
    }
    out
}

#[tokio::test]
async fn a_collector_that_compacts_exports_new_patterns_per_cluster_and_their_text() {
    let brokers = brokers();
    let topic = unique("new-patterns");
    create_topic(&brokers, &topic, 1).await;
    let out = tempfile::tempdir().unwrap();
    let url = warm_table::location(out.path().to_str().unwrap()).unwrap();
    warm_table::write_records(
        &url,
        &mut lines(0, 2, &["upstream 10.0.0.{} refused", "disk {}% full"]),
    )
    .await
    .unwrap();
    let collector = Collector::start_with(
        &brokers,
        &topic,
        &unique("group"),
        out.path(),
        &["--compact-every", "1s"],
    );
    // The page once the new error patterns counted reach `count`.
    let collector = &collector;
    let new_errors = |count: f64| {
        testkit::eventually_async(
            "the new error patterns counted",
            Duration::from_secs(60),
            move || async move {
                let scrape = collector.scrape().await;
                let new = r#"collector_log_patterns_new_total{cluster="east",level="ERROR"}"#;
                (scrape.value(new) == count).then_some(scrape)
            },
        )
    };
    let scrape = new_errors(1.0).await;
    assert_eq!(
        scrape.value(r#"collector_log_patterns_new_total{cluster="east",level="WARN"}"#),
        1.0
    );
    // Every warning and error of the two hours; request events have no pattern.
    assert_eq!(
        scrape.value(r#"collector_log_pattern_lines_total{cluster="east",level="ERROR"}"#),
        40.0
    );
    assert_eq!(
        scrape.value(r#"collector_log_pattern_lines_total{cluster="east",level="WARN"}"#),
        20.0
    );
    assert_eq!(
        scrape.value(r#"collector_compactions_total{outcome="error"}"#),
        0.0
    );
    let info: Vec<&str> = scrape
        .text
        .lines()
        .filter(|line| line.starts_with("collector_new_log_pattern_info{"))
        .collect();
    assert_eq!(info.len(), 2, "{}", scrape.text);
    assert!(
        info[0].starts_with(
            r#"collector_new_log_pattern_info{cluster="east",level="ERROR",pattern_id="1",template="upstream <*> refused",example="upstream 10.0.0.0 refused"} "#
        ),
        "{}",
        info[0]
    );

    // An hour later in the log, a shape never seen: one more new error pattern; the known
    // ones are not new again.
    warm_table::write_records(
        &url,
        &mut lines(2, 1, &["certificate for host-{} expired", "disk {}% full"]),
    )
    .await
    .unwrap();
    let scrape = new_errors(2.0).await;
    assert_eq!(
        scrape.value(r#"collector_log_patterns_new_total{cluster="east",level="WARN"}"#),
        1.0
    );
    assert!(
        scrape
            .text
            .contains(r#"template="certificate for host-<*> expired""#),
        "{}",
        scrape.text
    );
    assert!(scrape.value(r#"collector_compactions_total{outcome="ok"}"#) >= 2.0);
}
