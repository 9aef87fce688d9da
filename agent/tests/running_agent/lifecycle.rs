//! Operating the agent: zero configuration, configuration precedence (defaults < file < env <
//! flags), clear configuration errors, and a clean SIGTERM that flushes the log.

use std::io::Write;
use std::process::Command;
use testkit::{Agent, http::client};

fn build_info(scrape: &testkit::Scrape) -> String {
    scrape
        .series
        .keys()
        .find(|k| k.starts_with("agent_build_info{"))
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn runs_with_zero_configuration() {
    // Only the ports are set (a test must not take the fixed defaults); everything else defaults,
    // in a fresh working directory.
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .current_dir(cwd.path())
        .env("AGENT_LISTEN", "127.0.0.1:0")
        .env("AGENT_METRICS_LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let api = std::io::BufRead::lines(stderr)
        .map_while(Result::ok)
        .find_map(|line| {
            line.contains("metadata API listening")
                .then(|| line.split("addr=").nth(1).unwrap().to_owned())
        })
        .unwrap();
    let response = client()
        .get(format!(
            "http://{api}/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text"
        ))
        .header("Metadata", "True")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Standard_D2s_v5");
    let logs = testkit::eventually(
        "an hourly file under ./data/logs",
        std::time::Duration::from_secs(10),
        || {
            let logs: Vec<_> = std::fs::read_dir(cwd.path().join("data/logs"))
                .ok()?
                .collect();
            (!logs.is_empty()).then_some(logs)
        },
    );
    assert_eq!(logs.len(), 1, "one hourly file under ./data/logs");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn flags_beat_environment_beats_file_beats_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "cluster = \"file-cluster\"\nmachine = \"file-machine\"\nrate-limit = 0"
    )
    .unwrap();
    let config = file.path().to_str().unwrap();

    let from_file = Agent::builder()
        .without_identity()
        .args(["--config", config])
        .start();
    assert_eq!(
        build_info(&from_file.scrape().await),
        format!(
            r#"agent_build_info{{version="{}",cluster="file-cluster",machine="file-machine"}}"#,
            agent::VERSION
        )
    );

    let from_env = Agent::builder()
        .without_identity()
        .args(["--config", config])
        .env("AGENT_CLUSTER", "env-cluster")
        .start();
    assert!(
        build_info(&from_env.scrape().await)
            .contains(r#"cluster="env-cluster",machine="file-machine""#)
    );

    let from_flag = Agent::builder()
        .without_identity()
        .args(["--config", config, "--cluster", "flag-cluster"])
        .env("AGENT_CLUSTER", "env-cluster")
        .start();
    assert!(
        build_info(&from_flag.scrape().await)
            .contains(r#"cluster="flag-cluster",machine="file-machine""#)
    );
    // rate-limit = 0 from the file: no throttling.
    for _ in 0..20 {
        assert_eq!(from_flag.get("/metadata/versions").await.status(), 200);
    }

    let hostname = Agent::builder().without_identity().start();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert!(
        build_info(&hostname.scrape().await)
            .contains(&format!(r#"cluster="local",machine="{host}""#))
    );
}

#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rate-limit", "fast"],
            "invalid value 'fast' for '--rate-limit",
        ),
        (
            &["--listen", "nowhere"],
            "invalid value 'nowhere' for '--listen",
        ),
        (&["--cluster", "a/b"], "--cluster \"a/b\" must be"),
        (&["--log-level", "chatty"], "--log-level"),
        (
            &["--config", "/nonexistent/agent.toml"],
            "reading config file /nonexistent/agent.toml",
        ),
        (
            &["--metadata-url", "ftp://host/doc"],
            "scheme \"ftp\" is not supported",
        ),
        (
            &["--metadata", "/x", "--metadata-url", "http://h/d"],
            "cannot be used with",
        ),
        // A zero or absurd size or count: refused, never silently rounded.
        (
            &["--log-buffer-lines", "0"],
            "--log-buffer-lines 0 is out of bounds: give a value from 1 to 10000000",
        ),
        (
            &["--log-buffer-lines", "99999999999"],
            "--log-buffer-lines 99999999999 is out of bounds",
        ),
        (
            &["--max-held-requests", "0"],
            "--max-held-requests 0 is out of bounds: give a value from 1 to 65536",
        ),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--roll-threads", "5000"], "--roll-threads"),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("binding the metadata API to") && stderr.contains("Address already in use"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_flushes_the_log() {
    let mut agent = Agent::start_unlimited();
    for _ in 0..50 {
        assert_eq!(agent.get("/metadata/versions").await.status(), 200);
    }
    let status = agent.terminate();
    assert!(status.success(), "{status:?}\n{}", agent.stderr());
    let records = agent.log_records();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.target == "imds::request")
            .count(),
        50,
        "every request event reached the file"
    );
    // The last event in time, not in the file: the writer keeps each thread's lines in order,
    // and the signal's and main thread's lines can share a batch in either order.
    let last = records.iter().max_by_key(|r| r.timestamp).unwrap();
    assert_eq!(last.message, "agent stopped");
    assert!(
        records
            .iter()
            .any(|r| r.message == "shutting down"
                && r.fields.as_ref().unwrap()["signal"] == "SIGTERM")
    );
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(agent.api).is_err());
}
