//! Test harness: starts the real `agent` binary on port 0 with its own data directory, learns
//! the bound addresses from its start-up lines, and offers HTTP, scrape and log helpers.
#![allow(dead_code, clippy::unwrap_used)]

use logrecord::LogRecord;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const API_VERSION: &str = "2021-02-01";

/// A running agent, killed when dropped.
pub struct Agent {
    process: Spawned,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    /// The admin API, when started with `--admin-listen`.
    pub admin: Option<SocketAddr>,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// How to start an agent.
#[derive(Default)]
pub struct AgentBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    identity: bool,
    faketime: Option<String>,
    open_file_limit: Option<u32>,
}

impl AgentBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Use this data directory (kept after the agent stops) instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Runs the agent under libfaketime (Debian's `faketime`), its clock starting at `start`
    /// (`YYYY-MM-DD HH:MM:SS`, UTC) and advancing normally.
    pub fn faketime(mut self, start: &str) -> Self {
        self.faketime = Some(start.to_owned());
        self
    }

    /// Runs the agent with this open-file limit (`ulimit -n`), through util-linux's `prlimit`,
    /// which execs the agent (signals reach it directly).
    pub fn open_file_limit(mut self, limit: u32) -> Self {
        self.open_file_limit = Some(limit);
        self
    }

    /// Do not pass `--cluster test-cluster --machine test-host`.
    pub fn without_identity(mut self) -> Self {
        self.identity = false;
        self
    }

    pub fn start(self) -> Agent {
        let (temp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().unwrap();
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let mut command = match (&self.faketime, self.open_file_limit) {
            (None, Some(limit)) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg(agent_binary());
                command
            }
            (None, None) => Command::new(agent_binary()),
            (Some(_), Some(_)) => panic!("faketime and open_file_limit together are not supported"),
            (Some(start), None) => {
                // Preloaded into the agent itself (the `faketime` wrapper would stand between the
                // agent and the signals the tests send).
                let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
                assert!(
                    Path::new(library).exists(),
                    "libfaketime is missing: run scripts/install-test-deps (Debian package faketime)"
                );
                let mut command = Command::new(agent_binary());
                // Monotonic time stays real: timers and timeouts keep working.
                command
                    .env("LD_PRELOAD", library)
                    .env("FAKETIME", format!("@{start}"))
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                    .env("TZ", "UTC");
                command
            }
        };
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir);
        if self.identity {
            command.args(["--cluster", "test-cluster", "--machine", "test-host"]);
        }
        command.args(&self.args).env_remove("RUST_LOG");
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let mut announcements = vec!["metadata API listening", "metrics listening"];
        if self.args.iter().any(|a| a == "--admin-listen") {
            announcements.push("admin listening");
        }
        let (process, addrs) = spawn_listening(command, "agent", &announcements);
        Agent {
            process,
            api: addrs[0],
            metrics: addrs[1],
            admin: addrs.get(2).copied(),
            data_dir,
            _temp: temp,
        }
    }
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            identity: true,
            ..AgentBuilder::default()
        }
    }

    /// An agent with the rate limit off, so tests can send as they like.
    pub fn start_unlimited() -> Agent {
        Agent::builder().args(["--rate-limit", "0"]).start()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.api, path_and_query)
    }

    /// GET with `Metadata: true`.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        client()
            .get(self.url(path_and_query))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap()
    }

    /// GET `/metadata/instance<path>` with the usual api-version and `extra` query parameters.
    pub async fn instance(&self, path: &str, extra: &str) -> reqwest::Response {
        self.get(&format!(
            "/metadata/instance{path}?api-version={API_VERSION}{extra}"
        ))
        .await
    }

    /// The `/metrics` page as `series -> value`.
    pub async fn scrape(&self) -> Scrape {
        let text = client()
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text)
    }

    /// Every record of the local log files, in file and line order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        read_log_records(&self.data_dir.join("logs"))
    }

    /// Waits until `predicate` holds for the local log (the writer is asynchronous).
    pub fn wait_for_log(
        &self,
        what: &str,
        predicate: impl Fn(&[LogRecord]) -> bool,
    ) -> Vec<LogRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.log_records();
            if predicate(&records) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {what}; it has {} records",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A child process whose stderr is read for good (a full pipe would block it), killed when dropped.
pub struct Spawned {
    child: Child,
    name: &'static str,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Starts `command` and waits until it has logged each of `announcements` (`<message> addr=<addr>`
/// lines on stderr); returns their addresses in that order.
pub fn spawn_listening(
    mut command: Command,
    name: &'static str,
    announcements: &[&str],
) -> (Spawned, Vec<SocketAddr>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap());
    let kept = Arc::clone(&stderr);
    let wanted: Vec<String> = announcements.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if let Some(index) = wanted.iter().position(|w| line.contains(w.as_str()))
                && let Some(addr) = line.split("addr=").nth(1)
            {
                let _ = tx.send((index, addr.trim().parse::<SocketAddr>().unwrap()));
            }
            kept.lock().unwrap().push(line);
        }
    });
    let mut process = Spawned {
        child,
        name,
        stderr,
    };
    let mut addrs: Vec<Option<SocketAddr>> = vec![None; announcements.len()];
    while addrs.iter().any(Option::is_none) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((index, addr)) => addrs[index] = Some(addr),
            Err(_) => {
                let status = process.child.try_wait().unwrap();
                process.kill();
                panic!(
                    "{name} did not start (exit: {status:?}); stderr:\n{}",
                    process.stderr()
                );
            }
        }
    }
    (process, addrs.into_iter().flatten().collect())
}

impl Spawned {
    /// Sends SIGTERM and waits (up to 30 s) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 30 s of SIGTERM:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A failing test shows what the process said (and whether it had already exited): the
        // only trace of, say, a collector that stopped making progress.
        if std::thread::panicking() {
            let exited = self.child.try_wait().ok().flatten();
            let lines = self.stderr.lock().map(|l| l.clone()).unwrap_or_default();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} (pid {}, {}), last {} stderr lines:\n{}",
                self.name,
                self.child.id(),
                exited.map_or("still running".to_owned(), |s| format!("exited: {s}")),
                tail.len(),
                tail.join("\n")
            );
        }
        self.kill();
    }
}

/// The `agent` binary: cargo's own path in the agent's tests; from another package's tests (the
/// warm path's, which share this harness), the workspace's debug build.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_agent") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let path = target.join("debug/agent");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p agent` (scripts/test does)",
        path.display()
    );
    path
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The complete records of one log file.
pub fn read_log_records_of(file: &Path) -> Vec<LogRecord> {
    let text = std::fs::read_to_string(file).unwrap();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|line| {
            LogRecord::from_json_line(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()))
        })
        .collect()
}

pub fn read_log_records(dir: &Path) -> Vec<LogRecord> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // The writer may be mid-line: only complete lines count.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            records.push(
                LogRecord::from_json_line(line)
                    .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display())),
            );
        }
    }
    records
}

/// Polls `done` every 50 ms until it holds; fails the test if it does not within `within`.
pub fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A parsed Prometheus text page.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse::<f64>().unwrap())
            })
            .collect();
        Scrape {
            text: text.to_owned(),
            series,
        }
    }

    /// The value of one series, spelled as exposed (`name{a="x",b="y"}`); 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels contain all of `labels`.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.series
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Sends raw bytes as a request and returns the status code and the body (for inputs an HTTP
/// client library refuses to send).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The built-in example document, as served at [`API_VERSION`] (without its `extended` block).
pub fn example_document() -> serde_json::Value {
    let mut document = example_document_with_extended(API_VERSION);
    document.as_object_mut().unwrap().remove("extended");
    document
}

/// The built-in example document with the fields that exist at `api_version`, `extended` kept.
pub fn example_document_with_extended(api_version: &str) -> serde_json::Value {
    let document: serde_json::Value =
        serde_json::from_str(agent::metadata::EXAMPLE_DOCUMENT).unwrap();
    let version = agent::api_version::index_of(api_version).unwrap();
    agent::metadata::by_version::filter(&document, version)
}

/// Runs a future to completion from a plain (non-async) test.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A moto S3 server (PyPI, installed by scripts/install-test-deps) on a free loopback port,
/// killed when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let binary = root.join(".cache/moto/bin/moto_server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/install-test-deps (it installs moto, an S3-compatible server, from PyPI)",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("moto's start", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        // On a thread of its own: callers may be inside a runtime.
        let url = format!("{}/{bucket}", self.endpoint);
        let status = std::thread::spawn(move || {
            block_on(async {
                reqwest::Client::new()
                    .put(url)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .join()
        .unwrap();
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
    }

    /// The `AWS_*` variables that point a client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}
