//! The real `agent` binary, started on port 0 with its own data directory; its bound addresses
//! are learnt from its start-up lines.

use crate::process::{Spawned, spawn_listening, workspace_binary};
use crate::{Scrape, agent_log, eventually, http};
use logrecord::LogRecord;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// The api-version the tests ask for unless they test versions.
pub const API_VERSION: &str = "2021-02-01";

/// A running agent, killed when dropped.
#[derive(Debug)]
pub struct Agent {
    process: Spawned,
    /// The metadata API.
    pub api: SocketAddr,
    /// The Prometheus exporter.
    pub metrics: SocketAddr,
    /// The admin API, when started with `--admin-listen`.
    pub admin: Option<SocketAddr>,
    /// Its data directory (a temporary one unless the builder was given one).
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// How to start an agent.
#[derive(Debug, Default)]
pub struct AgentBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    identity: bool,
    faketime: Option<String>,
    open_file_limit: Option<u32>,
}

impl AgentBuilder {
    /// One more command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// One environment variable.
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

    /// The admin API on a free loopback port over HTTPS with this certificate and key; its logs
    /// token `token` (passed in the environment, as secrets are).
    pub fn admin_https(self, cert: &Path, key: &Path, token: &str) -> Self {
        self.env("AGENT_ADMIN_TOKEN", token)
            .args(["--admin-listen", "127.0.0.1:0", "--admin-tls-cert"])
            .arg(cert.to_str().unwrap())
            .arg("--admin-tls-key")
            .arg(key.to_str().unwrap())
    }

    /// Do not pass `--cluster test-cluster --machine test-host`.
    pub fn without_identity(mut self) -> Self {
        self.identity = false;
        self
    }

    /// Starts the agent and waits until it listens.
    pub fn start(self) -> Agent {
        let (temp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().unwrap();
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let binary = workspace_binary("agent");
        let mut command = match (&self.faketime, self.open_file_limit) {
            (None, Some(limit)) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg(binary);
                command
            }
            (None, None) => Command::new(binary),
            (Some(_), Some(_)) => panic!("faketime and open_file_limit together are not supported"),
            (Some(start), None) => {
                // Preloaded into the agent itself (the `faketime` wrapper would stand between the
                // agent and the signals the tests send).
                let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
                assert!(
                    Path::new(library).exists(),
                    "libfaketime is missing: run scripts/install-test-deps (Debian package faketime)"
                );
                let mut command = Command::new(binary);
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
    /// A builder for an agent named `test-cluster`/`test-host`.
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

    /// An agent named `cluster`/`machine`, rate limit off, shipping to `topic` on `brokers`.
    pub fn shipping_to(
        brokers: &str,
        topic: &str,
        cluster: &str,
        machine: &str,
        data_dir: &Path,
    ) -> Agent {
        Agent::shipping_with(brokers, topic, (cluster, machine), data_dir, &[])
    }

    /// [`Agent::shipping_to`] with more flags (e.g. Kafka security), `identity` being
    /// `(cluster, machine)`.
    pub fn shipping_with(
        brokers: &str,
        topic: &str,
        identity: (&str, &str),
        data_dir: &Path,
        extra: &[String],
    ) -> Agent {
        Agent::builder()
            .without_identity()
            .data_dir(data_dir)
            .args(["--rate-limit", "0", "--kafka-brokers", brokers])
            .args(["--kafka-topic", topic, "--cluster", identity.0])
            .args(["--machine", identity.1])
            .args(extra.iter().cloned())
            .start()
    }

    /// The metadata API's URL of `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.api, path_and_query)
    }

    /// GET with `Metadata: true`.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        http::client()
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
        Scrape::fetch(self.metrics).await
    }

    /// Every record of the local log files, in file and line order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        agent_log::read_log_records(&self.data_dir.join("logs"))
    }

    /// Waits until `predicate` holds for the local log (the writer is asynchronous).
    pub fn wait_for_log(
        &self,
        what: &str,
        predicate: impl Fn(&[LogRecord]) -> bool,
    ) -> Vec<LogRecord> {
        eventually(
            &format!("the local log showing {what}"),
            Duration::from_secs(10),
            || Some(self.log_records()).filter(|records| predicate(records)),
        )
    }

    /// Waits until the shipper has caught up with the local log (backlog under 4 KiB), so
    /// stopping the agent now leaves only its shutdown events for the next start. A fresh broker
    /// can take seconds to hand out producer ids; a slow CI machine must not make that look like
    /// a loss.
    pub async fn wait_until_shipped(&self) {
        crate::eventually_async(
            "the shipper catching up",
            Duration::from_secs(60),
            || async {
                let scrape = self.scrape().await;
                scrape.value("agent_shipper_delivered_events_total") > 0.0
                    && scrape.value("agent_shipper_backlog_bytes") <= 4096.0
            },
        )
        .await
    }

    /// Sends `count` metadata requests, all of which must succeed.
    pub async fn load(&self, count: usize) {
        for i in 0..count {
            let path = if i % 3 == 0 {
                "/compute/vmId"
            } else {
                "/network/interface/0/macAddress"
            };
            let response = self.instance(path, "&format=text").await;
            assert_eq!(
                response.status(),
                200,
                "metadata requests never fail because of telemetry"
            );
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }

    /// Everything the agent has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// CPU time the agent has used so far (all threads).
    pub fn cpu_time(&self) -> Duration {
        self.process.cpu_time()
    }

    /// Resident memory now and at its peak, bytes.
    pub fn memory(&self) -> (u64, u64) {
        self.process.memory()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
