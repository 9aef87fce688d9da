//! The warm store read back as the tests check it: the Delta table's files and rows (through the
//! collector's own `warm_table`), its dead letters, and the exactly-once comparison with what the
//! agents logged.

use logrecord::{Level, LogRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{Agent, Collector, agent_log::warm_events, eventually, kafka, run, s3::S3Server};

fn table_url(out: &Path) -> url::Url {
    warm_table::location(out.to_str().unwrap()).unwrap()
}

/// Every data file of the table's current version (none before the table exists).
pub fn store_files(out: &Path) -> Vec<PathBuf> {
    if !out.join("_delta_log").exists() {
        return Vec::new();
    }
    let url = table_url(out);
    run(async move { warm_table::data_files(&url).await })
        .unwrap()
        .into_iter()
        .map(|relative| out.join(relative))
        .collect()
}

/// Every row of an `s3://` table on `server`.
pub fn s3_records(server: &S3Server, url: &str) -> Vec<LogRecord> {
    let url = url::Url::parse(url).unwrap();
    let options = server.options();
    run(async move {
        warm_table::register_storage();
        warm_table::read_records_with(&url, options).await
    })
    .unwrap()
}

/// Every row of the table's current version (none before the table exists).
pub fn store_records(out: &Path) -> Vec<LogRecord> {
    if !out.join("_delta_log").exists() {
        return Vec::new();
    }
    let url = table_url(out);
    run(async move { warm_table::read_records(&url).await }).unwrap()
}

/// The dead-letter entries of the store.
pub fn dead_letters(out: &Path) -> Vec<serde_json::Value> {
    let dir = out.join("_dead_letters");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut letters: Vec<serde_json::Value> = entries
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    letters.sort_by_key(|l| l["offset"].as_i64());
    letters
}

/// Waits until the store holds at least as many rows as `expected` has events.
pub fn wait_for_rows(out: &Path, expected: usize, within: Duration) -> Vec<LogRecord> {
    eventually(&format!("{expected} rows in the store"), within, || {
        Some(store_records(out)).filter(|rows| rows.len() >= expected)
    })
}

/// The store holds exactly `expected`, each event once, field for field.
pub fn assert_exactly_once(stored: &[LogRecord], expected: &[LogRecord]) {
    let mut by_id: BTreeMap<logrecord::Uuid, usize> = BTreeMap::new();
    for row in stored {
        *by_id.entry(row.id).or_default() += 1;
    }
    let repeated: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} events stored more than once, e.g. {:?}",
        repeated.len(),
        repeated.first()
    );
    let stored_by_id: BTreeMap<logrecord::Uuid, &LogRecord> =
        stored.iter().map(|r| (r.id, r)).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !stored_by_id.contains_key(&e.id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing from the store, e.g. {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    assert_eq!(
        stored.len(),
        expected.len(),
        "the store holds events that are not in the agents' logs"
    );
    for event in expected {
        assert_eq!(stored_by_id[&event.id], event, "stored field for field");
    }
    assert!(
        stored.iter().all(|r| r.level >= Level::Info),
        "no DEBUG event in the warm store"
    );
}

/// The warm path at its smallest with two clusters: agents `west`/`host-1` and `east`/`host-2`
/// shipping to a fresh topic, one collector writing the table in `out`.
pub struct TwoClusters {
    pub west: Agent,
    pub east: Agent,
    pub collector: Collector,
    /// The agents' data directories, west's first.
    pub data: [tempfile::TempDir; 2],
    pub out: tempfile::TempDir,
}

impl TwoClusters {
    /// Starts it on a new topic named after `name`, of `partitions` partitions.
    pub async fn start(name: &str, partitions: i32) -> TwoClusters {
        let brokers = kafka::brokers();
        let topic = kafka::unique(name);
        kafka::create_topic(&brokers, &topic, partitions).await;
        let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let out = tempfile::tempdir().unwrap();
        TwoClusters {
            west: Agent::shipping_to(&brokers, &topic, "west", "host-1", data[0].path()),
            east: Agent::shipping_to(&brokers, &topic, "east", "host-2", data[1].path()),
            collector: Collector::start(&brokers, &topic, &kafka::unique("group"), out.path()),
            data,
            out,
        }
    }

    /// Stops both agents once they have shipped what they logged; the events they logged at INFO
    /// and above (their shutdown events included), which the table must hold exactly once.
    pub async fn stop_agents(&mut self) -> Vec<LogRecord> {
        self.west.wait_until_shipped().await;
        self.east.wait_until_shipped().await;
        // A stopped agent has shipped all it could and logged its last event.
        assert!(self.west.terminate().success() && self.east.terminate().success());
        warm_events(&[self.data[0].path(), self.data[1].path()])
    }
}
