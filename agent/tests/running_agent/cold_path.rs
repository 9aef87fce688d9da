//! The cold path on the host: closed hourly files roll into hive-partitioned Parquet, every valid
//! line once, field for field; corrupt lines are skipped and counted; retention by age and budget
//! never removes what is not yet rolled or shipped.

use logrecord::{Level, LogRecord};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{Agent, eventually};

const KEEP: [&str; 4] = ["--retain-raw", "100000h", "--retain-parquet", "100000h"];

/// Writes an hourly raw file of `count` records of every level for `hour` (`YYYY-MM-DD-HH`), with
/// `corrupt` garbage lines among them; returns the valid records.
fn write_raw(logs: &Path, hour: &str, count: u64, corrupt: &[&str]) -> Vec<LogRecord> {
    std::fs::create_dir_all(logs).unwrap();
    let (date, hh) = hour.rsplit_once('-').unwrap();
    // Ids are UUIDs: the hour's digits and the line number make each one distinct.
    let digits = hour.replace('-', "");
    let id = |i: u64| format!("{}-{}00-7000-8000-{i:012x}", &digits[..8], &digits[8..]);
    let mut text = String::new();
    let mut records = Vec::new();
    for i in 0..count {
        let level = Level::ALL[(i % 5) as usize];
        // Slightly out of order, as concurrent writers produce; the roller sorts.
        let second = (count - i) % 60;
        let mut line = format!(
            r#"{{"seq":{},"id":"{}","timestamp":"{date}T{hh}:{:02}:{second:02}.{i:06}Z","level":"{level}","target":"t","message":"event {i}","cluster":"c","machine":"m""#,
            1000 + i,
            id(i),
            i % 60,
        );
        if i % 3 == 0 {
            line.push_str(r#","request_id":"5f0c3b1e-0000-4000-8000-000000000000","method":"GET","path":"/metadata/instance","api_version":"2021-02-01","format":"json","status":200,"latency_us":42,"response_bytes":100,"caller":"10.0.0.4""#);
        } else {
            line.push_str(r#","fields":{"attempt":3}"#);
        }
        line.push_str("}\n");
        records.push(LogRecord::from_json_line(&line).unwrap());
        text.push_str(&line);
        if let Some(garbage) = corrupt.get(i as usize) {
            text.push_str(garbage);
            text.push('\n');
        }
    }
    std::fs::write(logs.join(format!("agent.{hour}.log")), text).unwrap();
    records
}

fn parquet_of(data: &Path, machine: &str, hour: &str) -> PathBuf {
    let (date, hh) = hour.rsplit_once('-').unwrap();
    data.join(format!(
        "parquet/date={date}/hour={hh}/{machine}.{hour}.parquet"
    ))
}

fn sorted(mut records: Vec<LogRecord>) -> Vec<LogRecord> {
    records.sort_by_key(|r| (r.timestamp, r.seq));
    records
}

#[tokio::test]
async fn closed_hours_roll_every_valid_line_once_across_leap_day_and_new_year() {
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    let hours = [
        "2024-02-28-23",
        "2024-02-29-00",
        "2024-12-31-23",
        "2025-01-01-00",
    ];
    let mut expected = Vec::new();
    for (n, hour) in hours.iter().enumerate() {
        let corrupt: &[&str] = if n == 0 {
            &["{\"seq\":5,\"id\":", "not json", "{}"]
        } else {
            &[]
        };
        expected.push(write_raw(&logs, hour, 300 + n as u64, corrupt));
    }
    // A last line cut short by a crash.
    let mut last = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("agent.2025-01-01-00.log"))
        .unwrap();
    std::io::Write::write_all(&mut last, b"{\"seq\":99999,\"id\":\"cut").unwrap();

    let agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args(["--machine", "m"])
        .args(KEEP)
        .start();
    for hour in hours {
        eventually(&format!("{hour} rolled"), Duration::from_secs(30), || {
            parquet_of(data.path(), "m", hour).exists()
        });
    }
    for (hour, records) in hours.iter().zip(expected) {
        let rolled = logrecord::parquet_file::read(&parquet_of(data.path(), "m", hour)).unwrap();
        assert_eq!(
            rolled,
            sorted(records),
            "{hour}: every valid line, once, field for field, sorted by time"
        );
    }
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("agent_roller_files_total"), 4.0);
    assert_eq!(
        scrape.value("agent_roller_rows_total"),
        (300 + 301 + 302 + 303) as f64
    );
    assert_eq!(
        scrape.value("agent_roller_skipped_lines_total"),
        4.0,
        "3 corrupt lines and 1 cut short"
    );
    assert!(scrape.value(r#"agent_disk_used_bytes{kind="parquet"}"#) > 0.0);
    // The current hour's file is still open: not rolled.
    assert_eq!(
        logrecord::parquet_file::list(&data.path().join("parquet")).len(),
        4
    );
}

#[tokio::test]
async fn a_crash_mid_roll_leaves_no_partial_file_and_a_rerun_adds_no_duplicate() {
    let data = tempfile::tempdir().unwrap();
    let hour = "2025-06-30-12";
    let records = write_raw(&data.path().join("logs"), hour, 500, &[]);
    // What a crash during the write leaves: a hidden, half-written temporary.
    let target = parquet_of(data.path(), "m", hour);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(
        target.parent().unwrap().join(".writing-crashed.parquet"),
        b"PAR1 half",
    )
    .unwrap();

    let mut agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args(["--machine", "m"])
        .args(KEEP)
        .start();
    eventually("the roll", Duration::from_secs(30), || target.exists());
    let names: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [format!("m.{hour}.parquet")],
        "the leftover temporary is gone"
    );
    assert!(agent.terminate().success());
    let first = std::fs::read(&target).unwrap();

    // Run again: the hour is already rolled; nothing is written twice.
    let agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args(["--machine", "m"])
        .args(KEEP)
        .start();
    testkit::stays_async(
        "no second roll of a rolled hour",
        Duration::from_millis(500),
        || async {
            agent.scrape().await.value("agent_roller_files_total") == 0.0
                && std::fs::read(&target).unwrap() == first
        },
    )
    .await;
    assert_eq!(
        logrecord::parquet_file::read(&target).unwrap(),
        sorted(records)
    );
}

#[tokio::test]
async fn retention_removes_by_age_then_by_budget_oldest_first_and_keeps_the_open_hour() {
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    for hour in ["2025-03-01-00", "2025-03-01-01", "2025-03-01-02"] {
        write_raw(&logs, hour, 200, &[]);
    }
    // Raw kept 1 hour after it closed, Parquet for ever: the raw files go once rolled.
    let mut agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args([
            "--machine",
            "m",
            "--retain-raw",
            "1h",
            "--retain-parquet",
            "100000h",
        ])
        .start();
    eventually("rolled and raw removed", Duration::from_secs(30), || {
        ["2025-03-01-00", "2025-03-01-01", "2025-03-01-02"]
            .iter()
            .all(|h| {
                parquet_of(data.path(), "m", h).exists()
                    && !logs.join(format!("agent.{h}.log")).exists()
            })
    });
    let scrape = agent.scrape().await;
    assert_eq!(
        scrape.value(r#"agent_retention_deleted_files_total{kind="raw",reason="age"}"#),
        3.0
    );
    assert!(agent.terminate().success());

    // A budget smaller than what is there: Parquet goes oldest first; the open hour's raw file,
    // never.
    let agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args([
            "--machine",
            "m",
            "--retain-parquet",
            "100000h",
            "--max-disk-bytes",
            "1",
        ])
        .start();
    eventually("budget applied", Duration::from_secs(30), || {
        logrecord::parquet_file::list(&data.path().join("parquet")).is_empty()
    });
    assert_eq!(
        agent.scrape().await.value("agent_disk_budget_bytes"),
        1.0,
        "the budget is exposed for the alert"
    );
    let removed: Vec<String> = agent
        .wait_for_log("retention events", |r| {
            r.iter()
                .filter(|r| r.message == "retention removed a file")
                .count()
                >= 3
        })
        .iter()
        .filter(|r| r.message == "retention removed a file")
        .map(|r| {
            r.fields.as_ref().unwrap()["file"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        removed[removed.len() - 3..],
        [
            "m.2025-03-01-00.parquet",
            "m.2025-03-01-01.parquet",
            "m.2025-03-01-02.parquet"
        ]
    );
    assert!(
        !testkit::agent_log::read_log_records(&logs).is_empty(),
        "the current hour's raw file stays"
    );
    assert!(
        !data.path().join("parquet/date=2025-03-01").exists(),
        "empty partition directories go too"
    );
}

#[tokio::test]
async fn raw_files_the_shipper_has_not_passed_are_never_deleted() {
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    write_raw(&logs, "2025-03-01-00", 100, &[]);
    // Kafka unreachable: nothing is ever shipped.
    let agent = Agent::builder()
        .without_identity()
        .data_dir(data.path())
        .args([
            "--machine",
            "m",
            "--retain-raw",
            "1s",
            "--max-disk-bytes",
            "1",
            "--kafka-brokers",
            "127.0.0.1:1",
        ])
        .start();
    eventually("the roll", Duration::from_secs(30), || {
        parquet_of(data.path(), "m", "2025-03-01-00").exists()
    });
    testkit::stays(
        "the unshipped raw file kept whatever its age and the budget",
        Duration::from_millis(1500),
        || logs.join("agent.2025-03-01-00.log").exists(),
    );
    assert!(
        parquet_of(data.path(), "m", "2025-03-01-00").exists(),
        "and its Parquet, which would only be rolled again"
    );
    let scrape = agent.scrape().await;
    assert_eq!(scrape.sum("agent_retention_deleted_files_total", &[]), 0.0);
    assert_eq!(
        scrape.value("agent_roller_files_total"),
        1.0,
        "rolled once, no churn"
    );
}
