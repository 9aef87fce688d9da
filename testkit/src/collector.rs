//! The real `collector` binary, consuming a topic into a store.

use crate::Scrape;
use crate::process::{Spawned, spawn_listening, workspace_binary};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// A running collector, killed when dropped.
#[derive(Debug)]
pub struct Collector {
    process: Spawned,
    /// Its Prometheus exporter.
    pub metrics: SocketAddr,
}

impl Collector {
    /// A collector of `topic` in `group` writing to the directory `out`.
    pub fn start(brokers: &str, topic: &str, group: &str, out: &Path) -> Collector {
        Collector::start_with(brokers, topic, group, out, &[])
    }

    /// [`Collector::start`] with extra arguments.
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
        let mut command = Command::new(workspace_binary("collector"));
        command
            .args(["--kafka-brokers", brokers, "--topic", topic])
            .args(["--group", group, "--flush-interval", "300ms"])
            .args(["--metrics-listen", "127.0.0.1:0", "--out"])
            .arg(out)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG");
        let (process, addrs) = spawn_listening(command, "collector", &["metrics listening"]);
        Collector {
            process,
            metrics: addrs[0],
        }
    }

    /// The `/metrics` page.
    pub async fn scrape(&self) -> Scrape {
        Scrape::fetch(self.metrics).await
    }

    /// SIGKILL: no flush, no commit.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP: a collector frozen mid-work, as a long GC pause, a swapped-out host or a stuck
    /// disk would leave it.
    pub fn pause(&self) {
        self.process.signal("STOP");
    }

    /// SIGCONT after [`Collector::pause`].
    pub fn resume(&self) {
        self.process.signal("CONT");
    }

    /// Everything the collector has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Its exit status, if it has exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// CPU time it has used so far (see [`Spawned::cpu_time`]).
    pub fn cpu_time(&self) -> std::time::Duration {
        self.process.cpu_time()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }
}
