//! Time is a single point of failure: the agent runs under libfaketime at chosen instants.
//! Hourly files and their Parquet follow UTC across Feb 28 -> Feb 29 -> Mar 1 and Dec 31 -> Jan 1,
//! and a clock stepped back an hour loses no event and keeps `seq` increasing.

use logrecord::LogRecord;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::Agent;

const KEEP: [&str; 6] = [
    "--retain-raw",
    "100000h",
    "--retain-parquet",
    "100000h",
    "--rate-limit",
    "0",
];

/// Sends a request every 250 ms for `seconds`, all of which must succeed.
async fn traffic(agent: &Agent, seconds: u64) -> usize {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0;
    while Instant::now() < end {
        assert_eq!(agent.get("/metadata/versions").await.status(), 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sent
}

/// Records per hourly file.
fn by_file(logs: &Path) -> BTreeMap<String, Vec<LogRecord>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let records = testkit::agent_log::read_log_records_of(&path);
        files.insert(name, records);
    }
    files
}

async fn crossing(start: &str, first: &str, second: &str) {
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::builder()
        .data_dir(data.path())
        .faketime(start)
        .args(KEEP)
        .start();
    let sent = traffic(&agent, 8).await;
    // The first hour closes at :00:05 fake time; give the roller a pass.
    let parquet = data.path().join(format!(
        "parquet/date={}/hour={}/test-host.{first}.parquet",
        &first[..10],
        &first[11..]
    ));
    testkit::eventually(&format!("{first} rolled"), Duration::from_secs(20), || {
        parquet.exists()
    });
    assert!(agent.terminate().success());

    let files = by_file(&data.path().join("logs"));
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        [format!("agent.{first}.log"), format!("agent.{second}.log")]
    );
    for (name, records) in &files {
        let hour = &name["agent.".len()..name.len() - ".log".len()];
        for record in records {
            assert_eq!(
                record.timestamp.format("%Y-%m-%d-%H").to_string(),
                hour,
                "{name} holds only its own UTC hour"
            );
        }
    }
    let requests: usize = files
        .values()
        .flatten()
        .filter(|r| r.target == "imds::request")
        .count();
    assert_eq!(
        requests, sent,
        "every request event, in one file or the other"
    );
    let rolled = logrecord::parquet_file::read(&parquet).unwrap();
    assert_eq!(
        rolled.len(),
        files[&format!("agent.{first}.log")].len(),
        "the closed hour rolled whole"
    );
}

#[tokio::test]
async fn hours_follow_utc_from_feb_28_to_feb_29() {
    crossing("2028-02-28 23:59:57", "2028-02-28-23", "2028-02-29-00").await;
}

#[tokio::test]
async fn hours_follow_utc_from_feb_29_to_mar_1() {
    crossing("2028-02-29 23:59:57", "2028-02-29-23", "2028-03-01-00").await;
}

#[tokio::test]
async fn hours_follow_utc_from_dec_31_to_jan_1() {
    crossing("2028-12-31 23:59:57", "2028-12-31-23", "2029-01-01-00").await;
}

#[tokio::test]
async fn a_clock_stepped_back_an_hour_loses_nothing_and_seq_keeps_increasing() {
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::builder()
        .data_dir(data.path())
        .faketime("2028-03-01 10:30:00")
        .args(KEEP)
        .start();
    let first_run = traffic(&agent, 2).await;
    assert!(agent.terminate().success());
    // The host's clock is corrected back by an hour; the agent restarts.
    let mut agent = Agent::builder()
        .data_dir(data.path())
        .faketime("2028-03-01 09:30:00")
        .args(KEEP)
        .start();
    let second_run = traffic(&agent, 2).await;
    assert!(agent.terminate().success());

    let files = by_file(&data.path().join("logs"));
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["agent.2028-03-01-09.log", "agent.2028-03-01-10.log"]
    );
    let requests = files
        .values()
        .flatten()
        .filter(|r| r.target == "imds::request")
        .count();
    assert_eq!(requests, first_run + second_run, "nothing lost");
    let last_of_first = files["agent.2028-03-01-10.log"]
        .iter()
        .map(|r| r.seq)
        .max()
        .unwrap();
    let first_of_second = files["agent.2028-03-01-09.log"]
        .iter()
        .map(|r| r.seq)
        .min()
        .unwrap();
    assert!(
        first_of_second > last_of_first,
        "seq increases across the step back: the warm path's deduplication holds"
    );
    assert!(
        logrecord::parquet_file::list(&data.path().join("parquet")).is_empty(),
        "no hour is closed yet in the stepped-back time"
    );
}
