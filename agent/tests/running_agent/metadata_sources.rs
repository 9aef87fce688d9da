//! Metadata sources: a watched file, a per-caller directory, and an upstream URL with ETag
//! polling and a disk copy that keeps serving while the upstream is down.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{API_VERSION, Agent};

fn document(vm_id: &str) -> String {
    json!({"compute": {"vmId": vm_id, "location": "westeurope"}, "network": {"interface": []}})
        .to_string()
}

/// `compute/vmId` as text, asked from `from`.
async fn vm_id(agent: &Agent, from: [u8; 4]) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from(from))
        .build()
        .unwrap();
    let url = agent.url(&format!(
        "/metadata/instance/compute/vmId?api-version={API_VERSION}&format=text"
    ));
    let response = client
        .get(url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Polls until `compute/vmId` for `from` is `expected`; returns how long it took.
async fn wait_for_vm_id(
    agent: &Agent,
    from: [u8; 4],
    expected: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = vm_id(agent, from).await;
        if status == 200 && body == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {status} {body:?} after {within:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_file_edit_is_served_within_two_seconds_and_an_invalid_edit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, document("one")).unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata"])
        .arg(file.to_str().unwrap())
        .start();
    assert_eq!(vm_id(&agent, [127, 0, 0, 1]).await, (200, "one".into()));

    std::fs::write(&file, document("two")).unwrap();
    let took = wait_for_vm_id(&agent, [127, 0, 0, 1], "two", Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "edit served after {took:?}");

    std::fs::write(&file, "{\"compute\": {\"vmId\": \"broken\"").unwrap();
    testkit::eventually_async(
        "the broken edit's refusal",
        Duration::from_secs(10),
        || async {
            agent
                .scrape()
                .await
                .value(r#"imds_metadata_reload_errors_total{source="file"}"#)
                >= 1.0
        },
    )
    .await;
    assert_eq!(
        vm_id(&agent, [127, 0, 0, 1]).await,
        (200, "two".into()),
        "the last good document stays served"
    );
    let scrape = agent.scrape().await;
    assert!(
        scrape.value(r#"imds_metadata_reload_errors_total{source="file"}"#) >= 1.0,
        "{}",
        scrape.text
    );
    agent.wait_for_log("the refusal", |records| {
        records.iter().any(|r| {
            r.level == logrecord::Level::Warn && r.message.starts_with("metadata document refused")
        })
    });

    std::fs::write(&file, "[1, 2]").unwrap();
    testkit::eventually_async("the array's refusal", Duration::from_secs(10), || async {
        agent
            .scrape()
            .await
            .value(r#"imds_metadata_reload_errors_total{source="file"}"#)
            >= 2.0
    })
    .await;
    assert_eq!(
        vm_id(&agent, [127, 0, 0, 1]).await,
        (200, "two".into()),
        "an array is not an instance document"
    );

    std::fs::write(&file, document("three")).unwrap();
    wait_for_vm_id(&agent, [127, 0, 0, 1], "three", Duration::from_secs(2)).await;
    assert!(
        agent
            .scrape()
            .await
            .value(r#"imds_metadata_reloads_total{source="file"}"#)
            >= 2.0
    );
}

#[tokio::test]
async fn reading_or_touching_the_file_is_not_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, document("one")).unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata"])
        .arg(file.to_str().unwrap())
        .start();
    let reloads = || async {
        agent
            .scrape()
            .await
            .value(r#"imds_metadata_reloads_total{source="file"}"#)
    };
    // Read it as an operator would (each read was an inotify event that reloaded it, and the
    // reload's own read another: ~19 reloads a second, forever).
    for _ in 0..10 {
        assert_eq!(std::fs::read(&file).unwrap(), document("one").as_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Same bytes written again, and a new modification time: still nothing new to serve.
    std::fs::write(&file, document("one")).unwrap();
    testkit::stays_async("no reload", Duration::from_millis(2500), || async {
        reloads().await == 0.0
    })
    .await;
    let loaded = |records: &[logrecord::LogRecord]| {
        records
            .iter()
            .filter(|r| r.message.starts_with("metadata document loaded"))
            .count()
    };
    assert_eq!(loaded(&agent.log_records()), 0);
    // A real change is one reload, one log line.
    std::fs::write(&file, document("two")).unwrap();
    wait_for_vm_id(&agent, [127, 0, 0, 1], "two", Duration::from_secs(2)).await;
    testkit::stays_async("one reload", Duration::from_millis(2500), || async {
        reloads().await == 1.0
    })
    .await;
    agent.wait_for_log("one load", |records| loaded(records) == 1);
}

#[test]
fn a_fifo_in_the_directory_is_skipped_and_start_up_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.json"), document("default")).unwrap();
    let fifo = dir.path().join("10.0.0.9.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let mut agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata"])
        .arg(dir.path().to_str().unwrap())
        .start();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        testkit::block_on(vm_id(&agent, [127, 0, 0, 1])),
        (200, "default".into())
    );
    agent.wait_for_log("the warning", |records| {
        records.iter().any(|r| {
            r.level == logrecord::Level::Warn
                && r.message
                    .starts_with("skipping metadata file: not a regular file")
        })
    });
    // A FIFO given as the single --metadata file is a clear start-up error, not a hang.
    let data = tempfile::tempdir().unwrap();
    let output = run_agent_to_exit(data.path(), &["--metadata", fifo.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a regular file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_directory_serves_each_caller_its_own_document_with_a_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.json"), document("default-vm")).unwrap();
    std::fs::write(dir.path().join("127.0.0.2.json"), document("vm-2")).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a document").unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata"])
        .arg(dir.path().to_str().unwrap())
        .start();

    assert_eq!(
        vm_id(&agent, [127, 0, 0, 1]).await,
        (200, "default-vm".into())
    );
    assert_eq!(vm_id(&agent, [127, 0, 0, 2]).await, (200, "vm-2".into()));
    assert_eq!(
        vm_id(&agent, [127, 0, 0, 3]).await,
        (200, "default-vm".into())
    );

    // A VM arrives: its file is picked up; one leaves: it falls back to the default.
    std::fs::write(dir.path().join("127.0.0.3.json"), document("vm-3")).unwrap();
    wait_for_vm_id(&agent, [127, 0, 0, 3], "vm-3", Duration::from_secs(2)).await;
    std::fs::remove_file(dir.path().join("127.0.0.2.json")).unwrap();
    wait_for_vm_id(&agent, [127, 0, 0, 2], "default-vm", Duration::from_secs(2)).await;

    // An invalid per-caller edit keeps that caller's last good document.
    let refusals = || async {
        agent
            .scrape()
            .await
            .value(r#"imds_metadata_reload_errors_total{source="file"}"#)
    };
    let before = refusals().await;
    std::fs::write(dir.path().join("127.0.0.3.json"), "nope").unwrap();
    testkit::eventually_async(
        "the per-caller edit's refusal",
        Duration::from_secs(10),
        || async { refusals().await > before },
    )
    .await;
    assert_eq!(vm_id(&agent, [127, 0, 0, 3]).await, (200, "vm-3".into()));
}

#[tokio::test]
async fn a_directory_without_a_default_answers_404_for_unknown_callers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("127.0.0.2.json"), document("vm-2")).unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata"])
        .arg(dir.path().to_str().unwrap())
        .start();
    assert_eq!(vm_id(&agent, [127, 0, 0, 2]).await, (200, "vm-2".into()));
    let (status, body) = vm_id(&agent, [127, 0, 0, 1]).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"error": "Not found: no metadata document is configured for caller 127.0.0.1"})
    );
}

/// A test upstream: serves one document with an ETag, answers `If-None-Match` with 304.
#[derive(Default)]
struct UpstreamState {
    document: Mutex<(String, String)>,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
}

struct Upstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
    server: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(listener: tokio::net::TcpListener, body: String, etag: &str) -> Upstream {
        let state = Arc::new(UpstreamState::default());
        *state.document.lock().unwrap() = (body, etag.to_owned());
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/doc", axum::routing::get(serve_document))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream {
            addr,
            state,
            server,
        }
    }

    fn set(&self, body: String, etag: &str) {
        *self.state.document.lock().unwrap() = (body, etag.to_owned());
    }

    /// Stops answering at once: connections refused from now on.
    fn kill(self) {
        self.server.abort();
    }
}

async fn serve_document(
    State(state): State<Arc<UpstreamState>>,
    headers: HeaderMap,
) -> axum::response::Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let (body, etag) = state.document.lock().unwrap().clone();
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.to_str().unwrap() == etag)
    {
        state.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

#[tokio::test]
async fn the_upstream_is_polled_with_etag_and_its_disk_copy_serves_while_it_is_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream::start(listener, document("from-upstream"), "\"v1\"").await;
    let url = format!("http://{}/doc", upstream.addr);
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--rate-limit",
        "0",
        "--metadata-poll-interval",
        "200ms",
        "--metadata-url",
        &url,
    ];
    let mut agent = Agent::builder().data_dir(data.path()).args(args).start();
    wait_for_vm_id(
        &agent,
        [127, 0, 0, 1],
        "from-upstream",
        Duration::from_secs(5),
    )
    .await;

    // Unchanged: conditional requests answered 304.
    // Async: the upstream answers on this test's runtime.
    testkit::eventually_async(
        "two polls answered 304",
        Duration::from_secs(10),
        || async { upstream.state.not_modified.load(Ordering::SeqCst) >= 2 },
    )
    .await;
    assert!(agent.scrape().await.value("imds_metadata_age_seconds") < 1.0);

    upstream.set(document("changed"), "\"v2\"");
    wait_for_vm_id(&agent, [127, 0, 0, 1], "changed", Duration::from_secs(2)).await;
    assert!(data.path().join("metadata/upstream.json").exists());

    // Upstream down: the last good document stays served, failures are counted.
    upstream.kill();
    testkit::eventually_async(
        "a failed poll counted and a second of staleness",
        Duration::from_secs(10),
        || async {
            let scrape = agent.scrape().await;
            scrape.value(r#"imds_metadata_reload_errors_total{source="upstream"}"#) >= 1.0
                && scrape.value("imds_metadata_age_seconds") >= 1.0
        },
    )
    .await;
    assert_eq!(vm_id(&agent, [127, 0, 0, 1]).await, (200, "changed".into()));
    let scrape = agent.scrape().await;
    assert!(scrape.value(r#"imds_metadata_reload_errors_total{source="upstream"}"#) >= 1.0);
    assert!(
        scrape.value("imds_metadata_age_seconds") >= 1.0,
        "staleness grows while the upstream is down"
    );
    assert!(agent.terminate().success());

    // Restart while the upstream is still down: served from the disk copy at once.
    let agent = Agent::builder().data_dir(data.path()).args(args).start();
    assert_eq!(vm_id(&agent, [127, 0, 0, 1]).await, (200, "changed".into()));
    assert!(
        agent.scrape().await.value("imds_metadata_age_seconds") >= 1.0,
        "the copy's age counts from its fetch"
    );
}

#[tokio::test]
async fn with_no_copy_and_the_upstream_down_the_agent_answers_503_until_it_comes_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/doc");
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata-url", &url])
        .start();
    let response = agent.instance("/compute/vmId", "&format=text").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "Service unavailable: metadata has not been loaded yet"})
    );

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _upstream = Upstream::start(listener, document("late"), "\"v1\"").await;
    wait_for_vm_id(&agent, [127, 0, 0, 1], "late", Duration::from_secs(10)).await;
}

#[test]
fn invalid_documents_at_start_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("missing.json", None, "missing.json"),
        ("bad.json", Some("{oops"), "not valid JSON"),
        ("list.json", Some("[]"), "must be a JSON object"),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let output = run_agent_to_exit(dir.path(), &["--metadata", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let empty = tempfile::tempdir().unwrap();
    let output = run_agent_to_exit(dir.path(), &["--metadata", empty.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no valid default.json"));
}

fn run_agent_to_exit(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}
