//! Helpers of the warm-path tests: the real Kafka broker (`scripts/kafka`), the real `agent` and
//! `collector` binaries, and the store read back row for row.
#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../agent/tests/common/mod.rs"]
pub mod agent_harness;

pub use agent_harness::{Agent, Scrape};
use logrecord::{Level, LogRecord};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The broker the tests use: `$KAFKA_BROKERS`, else the one `scripts/kafka start` runs.
pub fn brokers() -> String {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap().to_owned();
    let reachable = first.parse::<SocketAddr>().ok().is_some_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    });
    assert!(
        reachable,
        "no Kafka broker at {brokers}: start one with `scripts/kafka start` (or set KAFKA_BROKERS)"
    );
    brokers
}

/// Messages in a topic: the sum of its partitions' high watermarks.
pub fn topic_message_count(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("count"))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}.{}.{nanos}", std::process::id())
}

pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// An agent shipping to `topic`.
pub fn start_agent(
    brokers: &str,
    topic: &str,
    cluster: &str,
    machine: &str,
    data_dir: &Path,
) -> Agent {
    Agent::builder()
        .without_identity()
        .data_dir(data_dir)
        .args([
            "--rate-limit",
            "0",
            "--kafka-brokers",
            brokers,
            "--kafka-topic",
            topic,
            "--cluster",
            cluster,
            "--machine",
            machine,
        ])
        .start()
}

/// A running collector, killed when dropped.
pub struct Collector {
    process: agent_harness::Spawned,
    pub metrics: SocketAddr,
}

impl Collector {
    pub fn start(brokers: &str, topic: &str, group: &str, out: &Path) -> Collector {
        Collector::start_with(brokers, topic, group, out, &[])
    }

    pub fn start_with(
        brokers: &str,
        topic: &str,
        group: &str,
        out: &Path,
        extra: &[&str],
    ) -> Collector {
        Collector::start_in(brokers, topic, group, out.to_str().unwrap(), extra, &[])
    }

    /// A collector writing to `out` (a directory or an `s3://` URL) with extra environment.
    pub fn start_in(
        brokers: &str,
        topic: &str,
        group: &str,
        out: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Collector {
        let mut command = Command::new(env!("CARGO_BIN_EXE_collector"));
        command
            .args([
                "--kafka-brokers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--flush-interval",
                "300ms",
            ])
            .args(["--metrics-listen", "127.0.0.1:0", "--out"])
            .arg(out)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG");
        let (process, addrs) =
            agent_harness::spawn_listening(command, "collector", &["metrics listening"]);
        Collector {
            process,
            metrics: addrs[0],
        }
    }

    pub async fn scrape(&self) -> Scrape {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text)
    }

    /// SIGKILL: no flush, no commit.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`): a collector frozen mid-work, as a long GC pause,
    /// a swapped-out host or a stuck disk would.
    pub fn pause(&self) {
        self.process.signal("STOP");
    }

    pub fn resume(&self) {
        self.process.signal("CONT");
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate()
    }
}

/// Runs `future` to its end on a runtime of its own (the tests' own runtime may be the caller).
pub fn run<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
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

fn table_url(out: &Path) -> url::Url {
    collector::warm_table::location(out.to_str().unwrap()).unwrap()
}

/// Every data file of the table's current version (none before the table exists).
pub fn store_files(out: &Path) -> Vec<PathBuf> {
    if !out.join("_delta_log").exists() {
        return Vec::new();
    }
    let url = table_url(out);
    run(async move { collector::warm_table::data_files(&url).await })
        .unwrap()
        .into_iter()
        .map(|relative| out.join(relative))
        .collect()
}

/// Every row of an `s3://` table on `server`.
pub fn s3_records(server: &agent_harness::S3Server, url: &str) -> Vec<LogRecord> {
    let url = url::Url::parse(url).unwrap();
    let options = [
        ("aws_endpoint", server.endpoint.clone()),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    run(async move {
        collector::warm_table::register_storage();
        collector::warm_table::read_records_with(&url, options).await
    })
    .unwrap()
}

/// Every row of the table's current version (none before the table exists).
pub fn store_records(out: &Path) -> Vec<LogRecord> {
    if !out.join("_delta_log").exists() {
        return Vec::new();
    }
    let url = table_url(out);
    run(async move { collector::warm_table::read_records(&url).await }).unwrap()
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

/// The INFO-and-above events of stopped agents' local logs that their shippers' checkpoints
/// cover: what the warm store must hold. What follows a checkpoint (the events a stopping agent
/// logs after its shipper stopped) waits on disk for the next start; this checks it is only that.
pub fn warm_events(data_dirs: &[&Path]) -> Vec<LogRecord> {
    let mut shipped = Vec::new();
    for dir in data_dirs {
        let position = checkpoint(dir);
        let (before, after): (Vec<_>, Vec<_>) = warm_lines(dir)
            .into_iter()
            .partition(|line| line.is_before(&position));
        let after: Vec<String> = after.into_iter().map(|line| line.record.message).collect();
        assert!(
            after
                .iter()
                .all(|m| m == "shipper stopped" || m == "agent stopped"),
            "events after the checkpoint of {}: {after:?}",
            dir.display()
        );
        shipped.extend(before.into_iter().map(|line| line.record));
    }
    shipped
}

/// An INFO-and-above record of an agent's local log, with where its line ends.
pub struct WarmLine {
    file: String,
    end: u64,
    pub record: LogRecord,
}

impl WarmLine {
    /// Whether the line lies before a shipper position (file name, byte offset).
    fn is_before(&self, position: &(String, u64)) -> bool {
        self.file < position.0 || (self.file == position.0 && self.end <= position.1)
    }
}

/// The INFO-and-above records of an agent's local log, in file order, with their positions.
pub fn warm_lines(data_dir: &Path) -> Vec<WarmLine> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut end = 0u64;
        for line in std::fs::read(&path)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
        {
            end += line.len() as u64;
            if let Ok(record) = LogRecord::from_json_line(std::str::from_utf8(line).unwrap())
                && record.level >= Level::Info
            {
                lines.push(WarmLine {
                    file: file.clone(),
                    end,
                    record,
                });
            }
        }
    }
    lines
}

/// The shipper's checkpoint of an agent's data directory: file name and offset.
pub fn checkpoint(data_dir: &Path) -> (String, u64) {
    let checkpoint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("shipper/checkpoint.json")).unwrap(),
    )
    .unwrap();
    (
        checkpoint["file"].as_str().unwrap().to_owned(),
        checkpoint["offset"].as_u64().unwrap(),
    )
}

/// How many INFO-and-above lines lie before `position` in an agent's local log.
pub fn warm_lines_before(data_dir: &Path, position: &(String, u64)) -> usize {
    warm_lines(data_dir)
        .iter()
        .filter(|line| line.is_before(position))
        .count()
}

/// Waits until the store holds at least as many rows as `expected` has events.
pub fn wait_for_rows(out: &Path, expected: usize, within: Duration) -> Vec<LogRecord> {
    let deadline = Instant::now() + within;
    loop {
        let rows = store_records(out);
        if rows.len() >= expected {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the store has {} rows after {within:?}, expected {expected}",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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

/// Waits until the agent's shipper has caught up with its local log (backlog under 4 KiB), so
/// stopping it now leaves only its shutdown events for the next start. A fresh broker can take
/// seconds to hand out producer ids; a slow CI machine must not make that look like a loss.
pub async fn wait_until_shipped(agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scrape = agent.scrape().await;
        if scrape.value("agent_shipper_delivered_events_total") > 0.0
            && scrape.value("agent_shipper_backlog_bytes") <= 4096.0
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shipper did not catch up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sends `count` metadata requests, all of which must succeed.
pub async fn load(agent: &Agent, count: usize) {
    for i in 0..count {
        let path = if i % 3 == 0 {
            "/compute/vmId"
        } else {
            "/network/interface/0/macAddress"
        };
        let response = agent.instance(path, "&format=text").await;
        assert_eq!(
            response.status(),
            200,
            "metadata requests never fail because of telemetry"
        );
    }
}
