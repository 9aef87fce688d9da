//! Log access from a dev box: the admin API lists and serves this host's raw and Parquet files,
//! byte for byte, to the holder of the token only, and nothing outside them.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::{Agent, http::client, http::raw_request};

const TOKEN: &str = "s3cret-admin-token-for-tests";
const FAULT_TOKEN: &str = "s3cret-fault-token-for-tests";

fn start_with_old_hour() -> (Agent, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = r#"{"seq":1,"id":"01930000-0000-7000-8000-00000000000a","timestamp":"2025-05-05T05:05:05Z","level":"DEBUG","target":"t","message":"m","cluster":"c","machine":"test-host"}"#;
    std::fs::write(logs.join("agent.2025-05-05-05.log"), format!("{line}\n")).unwrap();
    let agent = Agent::builder()
        .data_dir(data.path())
        .env("AGENT_ADMIN_TOKEN", TOKEN)
        .env("AGENT_ADMIN_FAULT_TOKEN", FAULT_TOKEN)
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--retain-raw",
            "100000h",
            "--retain-parquet",
            "100000h",
        ])
        .start();
    let parquet = data
        .path()
        .join("parquet/date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet");
    testkit::eventually("the old hour's roll", Duration::from_secs(30), || {
        parquet.exists()
    });
    (agent, data)
}

fn admin_url(agent: &Agent, path: &str) -> String {
    format!("http://{}{path}", agent.admin.unwrap())
}

#[tokio::test]
async fn without_the_token_nothing_is_served() {
    let (agent, _data) = start_with_old_hour();
    let none = client()
        .get(admin_url(&agent, "/logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert!(
        none.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );
    for wrong in [
        "Bearer nope",
        "Bearer s3cret-admin-token-for-test",
        "Basic czNjcmV0",
        &format!("bearer {TOKEN}"),
    ] {
        let response = client()
            .get(admin_url(&agent, "/logs/logs/agent.2025-05-05-05.log"))
            .header("Authorization", wrong)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(response.status().as_u16(), 401 | 403),
            "{wrong}: {}",
            response.status()
        );
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    // VMs cannot reach host logs through the metadata port.
    let via_metadata = client()
        .get(agent.url("/logs"))
        .header("Metadata", "true")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(via_metadata.status(), 404);
}

#[tokio::test]
async fn lists_and_serves_files_byte_for_byte_and_refuses_anything_else() {
    let (agent, data) = start_with_old_hour();
    let auth = format!("Bearer {TOKEN}");
    let listing: Value = client()
        .get(admin_url(&agent, "/logs"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = listing["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"logs/agent.2025-05-05-05.log"), "{names:?}");
    assert!(
        names.contains(&"parquet/date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet"),
        "{names:?}"
    );
    assert!(
        files.iter().any(|f| f["kind"] == "raw") && files.iter().any(|f| f["kind"] == "parquet")
    );
    for file in files {
        let name = file["name"].as_str().unwrap();
        let response = client()
            .get(admin_url(&agent, &format!("/logs/{name}")))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let served = response.bytes().await.unwrap();
        let on_disk = std::fs::read(data.path().join(name)).unwrap();
        if file["kind"] == "parquet"
            || !name.ends_with(&format!("{}.log", chrono::Utc::now().format("%Y-%m-%d-%H")))
        {
            assert_eq!(served.as_ref(), on_disk.as_slice(), "{name} byte for byte");
        }
    }
    std::fs::write(data.path().join("secret.txt"), "not a log").unwrap();
    for path in [
        "/logs/../secret.txt",
        "/logs/logs/../../secret.txt",
        "/logs/%2e%2e/secret.txt",
        "/logs/logs%2f..%2f..%2fsecret.txt",
        "/logs//etc/passwd",
        "/logs/secret.txt",
        "/logs/logs/agent.2025-05-05-05.log.tmp",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw_request(agent.admin.unwrap(), request.as_bytes());
        assert_eq!(status, 404, "{path}");
        assert!(
            serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(),
            "{path}"
        );
    }
    // Every access, allowed or refused, is in the local log.
    let records = agent.wait_for_log("admin accesses", |r| {
        r.iter().filter(|r| r.target == "imds::admin").count() >= files.len() + 8
    });
    let refused = records
        .iter()
        .filter(|r| r.target == "imds::admin" && r.status == Some(404))
        .count();
    assert_eq!(refused, 7);
}

#[tokio::test]
async fn links_are_neither_listed_nor_served_and_large_bodies_are_json_413() {
    let (agent, data) = start_with_old_hour();
    let auth = format!("Bearer {TOKEN}");
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:$6$secret").unwrap();
    // A link named like an hourly log (an hour in the future, so the roller leaves it alone),
    // and a partition directory that is a link to a directory of "Parquet" files.
    let link = data.path().join("logs/agent.2099-01-01-00.log");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let fake_partition = outside.path().join("partition");
    std::fs::create_dir_all(fake_partition.join("hour=00")).unwrap();
    std::fs::write(fake_partition.join("hour=00/x.parquet"), "root:$6$secret").unwrap();
    std::os::unix::fs::symlink(&fake_partition, data.path().join("parquet/date=2099-01-01"))
        .unwrap();
    let names = listed_names(&agent).await;
    assert!(
        names.contains(&"logs/agent.2025-05-05-05.log".to_owned()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("2099")), "{names:?}");
    for name in [
        "logs/agent.2099-01-01-00.log",
        "parquet/date=2099-01-01/hour=00/x.parquet",
    ] {
        let response = client()
            .get(admin_url(&agent, &format!("/logs/{name}")))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{name}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("secret"), "{body}");
    }

    let response = client()
        .put(admin_url(&agent, "/fault"))
        .header("Authorization", format!("Bearer {FAULT_TOKEN}"))
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid fault request: "),
        "{body}"
    );
}

async fn listed_names(agent: &Agent) -> Vec<String> {
    let listing: Value = client()
        .get(admin_url(agent, "/logs"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn hard_links_and_files_of_other_users_are_neither_listed_nor_served() {
    let (agent, data) = start_with_old_hour();
    // Beside the data directory (one filesystem, so a hard link can be made): a file the agent
    // must never serve, hard-linked into the log directory under an hourly log's name.
    let outside = tempfile::tempdir_in(data.path().parent().unwrap()).unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:$6$secret").unwrap();
    std::fs::hard_link(&secret, data.path().join("logs/agent.2099-01-01-00.log")).unwrap();
    // A file named like an hourly log that another user owns (made by root here; the tests run
    // as root in CI, and without root the chown is skipped with a note).
    let foreign = data.path().join("logs/agent.2099-01-01-01.log");
    std::fs::write(&foreign, "root:$6$secret\n").unwrap();
    let chowned = std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).is_ok();
    if !chowned {
        eprintln!("not root: the other-user case is not exercised");
    }
    let names = listed_names(&agent).await;
    assert!(
        names.contains(&"logs/agent.2025-05-05-05.log".to_owned()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("2099")), "{names:?}");
    for name in [
        "logs/agent.2099-01-01-00.log",
        "logs/agent.2099-01-01-01.log",
    ] {
        let response = get_with(&admin_url(&agent, &format!("/logs/{name}")), &[]).await;
        assert_eq!(response.status(), 404, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "error": format!("no such log file: {name}") })
        );
    }
}

/// `GET url` with the logs token and `headers`.
async fn get_with(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(url).bearer_auth(TOKEN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn downloads_honour_range_and_if_range_and_parser_errors_are_json() {
    let (agent, _data) = start_with_old_hour();
    let url = admin_url(&agent, "/logs/logs/agent.2025-05-05-05.log");
    let whole = get_with(&url, &[]).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    let whole = whole.bytes().await.unwrap();
    let size = whole.len();
    assert!(size > 100, "{size}");

    // The rest of a cut download, while the file is the same one.
    let rest = get_with(&url, &[("Range", "bytes=10-"), ("If-Range", &etag)]).await;
    assert_eq!(rest.status(), 206);
    assert_eq!(
        rest.headers()["content-range"],
        format!("bytes 10-{}/{size}", size - 1).as_str()
    );
    assert_eq!(
        rest.headers()["content-length"],
        (size - 10).to_string().as_str()
    );
    assert_eq!(rest.bytes().await.unwrap(), whole[10..]);
    let tail = get_with(&url, &[("Range", "bytes=-5")]).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), whole[size - 5..]);

    // A tag from another version of the file: the whole file.
    let changed = get_with(
        &url,
        &[("Range", "bytes=10-"), ("If-Range", "\"not-this-file\"")],
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.bytes().await.unwrap(), whole);

    // Past the end: 416, with the size, and no file bytes.
    let past = get_with(&url, &[("Range", &format!("bytes={size}-"))]).await;
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let body: Value = past.json().await.unwrap();
    assert_eq!(
        body["error"],
        format!("range not satisfiable: the file has {size} bytes")
    );

    // What hyper's parser refuses is JSON too: a NUL in the path, a huge header, a bad method.
    let admin = agent.admin.unwrap();
    let huge = format!(
        "GET /logs HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    for (request, status) in [
        (
            b"GET /logs HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (huge.into_bytes(), 431),
        (b"G(T /logs HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
    ] {
        let (got, body) = raw_request(admin, &request);
        assert_eq!(got, status, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"].as_str().unwrap().starts_with("Bad request."),
            "{body}"
        );
    }
}

#[test]
fn the_admin_api_never_runs_without_a_token() {
    let output = std::process::Command::new(testkit::process::workspace_binary("agent"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("never runs unauthenticated"));
}

/// The fault switch: off by default, set and cleared with the token only, never reachable on the
/// metadata port, shown in metrics while on, and it really delays and fails metadata requests.
#[tokio::test]
async fn fault_injection_is_admin_only_visible_and_real() {
    let agent = Agent::builder()
        .env("AGENT_ADMIN_TOKEN", TOKEN)
        .env("AGENT_ADMIN_FAULT_TOKEN", FAULT_TOKEN)
        .args(["--admin-listen", "127.0.0.1:0"])
        .start();
    let admin = |method: reqwest::Method, token: &str| {
        client()
            .request(method, admin_url(&agent, "/fault"))
            .header("Authorization", format!("Bearer {token}"))
    };

    let off = admin(reqwest::Method::GET, FAULT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_eq!(
        off.json::<Value>().await.unwrap(),
        serde_json::json!({"latency_ms": 0, "error_ratio": 0.0, "active": false})
    );
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("imds_fault_latency_seconds"), 0.0);
    assert_eq!(scrape.value("imds_fault_error_ratio"), 0.0);

    // Not without the token, and not on the metadata port at all.
    let refused = admin(reqwest::Method::PUT, "wrong-token-wrong-token")
        .body(r#"{"latency_ms": 100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // The logs token reads logs only: fault injection needs a token of its own.
    let out_of_scope = admin(reqwest::Method::PUT, TOKEN)
        .body(r#"{"latency_ms": 100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(out_of_scope.status(), 403);
    assert!(
        out_of_scope.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("/fault needs the fault token")
    );
    let on_metadata_port = client()
        .put(agent.url("/fault"))
        .header("Metadata", "true")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"latency_ms": 100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(on_metadata_port.status(), 404);

    // Bad input: 400 with a JSON message, fault still off.
    for (body, expected) in [
        (
            r#"{"latency_ms": 60001}"#,
            "latency_ms must be at most 60000",
        ),
        (
            r#"{"error_ratio": 1.5}"#,
            "error_ratio must be between 0 and 1",
        ),
        (r#"{"latency": 5}"#, "unknown field `latency`"),
        ("not json", "invalid fault"),
    ] {
        let response = admin(reqwest::Method::PUT, FAULT_TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let message = response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(agent.instance("", "").await.status(), 200);

    // Latency: every metadata request waits at least the injected time.
    let set = admin(reqwest::Method::PUT, FAULT_TOKEN)
        .body(r#"{"latency_ms": 300}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        serde_json::json!({"latency_ms": 300, "error_ratio": 0.0, "active": true})
    );
    assert_eq!(
        agent.scrape().await.value("imds_fault_latency_seconds"),
        0.3
    );
    let started = Instant::now();
    assert_eq!(agent.instance("", "").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Errors: with a ratio of 1 every request is a 500 with a JSON body saying why.
    admin(reqwest::Method::PUT, FAULT_TOKEN)
        .body(r#"{"error_ratio": 1}"#)
        .send()
        .await
        .unwrap();
    for _ in 0..5 {
        let failed = agent.instance("", "").await;
        assert_eq!(failed.status(), 500);
        assert_eq!(
            failed.json::<Value>().await.unwrap()["error"],
            "Internal server error: injected by the operator's fault switch"
        );
    }
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("imds_fault_error_ratio"), 1.0);
    assert_eq!(scrape.value("imds_fault_latency_seconds"), 0.0);
    assert_eq!(scrape.sum("imds_requests_total", &[r#"status="500""#]), 5.0);

    // Cleared: requests are fast and fine again, the gauges back at 0, and the switch logged.
    let cleared = admin(reqwest::Method::DELETE, FAULT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(cleared.json::<Value>().await.unwrap()["active"], false);
    assert_eq!(agent.instance("", "").await.status(), 200);
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("imds_fault_error_ratio"), 0.0);
    let mut switches = agent.wait_for_log("the fault switch events", |records| {
        records.iter().filter(|r| r.target == "imds::fault").count() == 3
    });
    switches.retain(|r| r.target == "imds::fault");
    // In the order they happened: `seq` orders one thread's lines, and the three requests may
    // have been served by different worker threads whose lines reached one batch of the writer.
    switches.sort_by_key(|r| r.timestamp);
    let switches: Vec<_> = switches
        .iter()
        .map(|r| (r.level.to_string(), r.message.clone()))
        .collect();
    assert_eq!(
        switches,
        [
            ("WARN".to_owned(), "fault injection switched on".to_owned()),
            ("WARN".to_owned(), "fault injection switched on".to_owned()),
            ("WARN".to_owned(), "fault injection switched off".to_owned()),
        ]
    );
}
