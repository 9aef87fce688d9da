//! Child processes of a test: started, their stderr kept (and shown when the test fails), stopped
//! by signal, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A workspace binary (`agent`, `collector`, `query`) of the build the running test belongs to:
/// a test binary lives in `<target>/<profile>/deps/`, the binaries one level up. A test of the
/// binary's own package has it built by cargo; another package's test needs `cargo build -p`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile_dir = test.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {name}` (scripts/test builds the whole workspace)",
        path.display()
    );
    path
}

/// A child process whose stderr is read for good (a full pipe would block it), killed when dropped.
#[derive(Debug)]
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
        .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
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
        self.signal("TERM");
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

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far, user and system, all threads (Linux's
    /// `/proc/PID/stat`, in clock ticks of 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name, in parentheses, may hold spaces: fields count from the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// Its resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status"))
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .unwrap()
                .success(),
            "kill -{name} {pid}"
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
