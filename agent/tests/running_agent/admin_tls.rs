//! The admin API as it is deployed past loopback: HTTPS with a certificate the agent reloads when
//! its files change, two token scopes, a brake on guessing, and its refusals at start (no TLS off
//! loopback, secrets other users can read). Certificates come from `scripts/make-certs`.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use testkit::tls::certificate;
use testkit::{Agent, eventually};

const TOKEN: &str = "tls-admin-logs-token-0123";
const FAULT_TOKEN: &str = "tls-admin-fault-token-0123";

fn https_agent(cert: &Path, key: &Path) -> Agent {
    Agent::builder()
        .env("AGENT_ADMIN_FAULT_TOKEN", FAULT_TOKEN)
        .admin_https(cert, key, TOKEN)
        .start()
}

/// A client that trusts only the CA in `ca`.
fn client_trusting(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The serial number of the certificate the server at `addr` presents, read by openssl.
fn served_serial(addr: std::net::SocketAddr) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn serial_of(cert: &Path) -> String {
    let output = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_admin_api_serves_https_and_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "admin", &[]);
    let agent = https_agent(&cert, &key);
    let admin = agent.admin.unwrap();
    let client = client_trusting(&dir.path().join("ca.pem"));
    let listing = client
        .get(format!("https://{admin}/logs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    assert!(listing.json::<Value>().await.unwrap()["files"].is_array());
    assert_eq!(served_serial(admin), serial_of(&cert));

    // Plain HTTP on the TLS port gets no answer but a closed connection; HTTPS goes on.
    let plain = testkit::http::client()
        .get(format!("http://{admin}/logs"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Renewed in place (a new pair renamed over the old, as certbot or cert-manager do).
    let renewed = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("ca.pem"), renewed.path().join("ca.pem")).unwrap();
    std::fs::copy(dir.path().join("ca.key"), renewed.path().join("ca.key")).unwrap();
    let (new_cert, new_key) = certificate(renewed.path(), "admin", &[]);
    assert_ne!(serial_of(&new_cert), serial_of(&cert));
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    eventually(
        "the renewed certificate served",
        Duration::from_secs(10),
        || served_serial(admin) == serial_of(&cert),
    );
    agent.wait_for_log("the reload", |records| {
        records
            .iter()
            .any(|r| r.message == "admin API certificate reloaded")
    });
    // A broken replacement is refused and the last good pair kept.
    std::fs::write(&cert, "not a certificate").unwrap();
    agent.wait_for_log("the refused reload", |records| {
        records.iter().any(|r| {
            r.message
                == "admin API certificate changed but does not load; still serving the previous one"
        })
    });
    let still = client
        .get(format!("https://{admin}/logs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
}

/// Each token opens its own scope; guessing is braked per caller address, right token or not.
#[tokio::test]
async fn token_scopes_and_the_brake_on_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "admin", &[]);
    let agent = https_agent(&cert, &key);
    let admin = agent.admin.unwrap();
    let client = client_trusting(&dir.path().join("ca.pem"));
    let call = |path: &str, token: &str| {
        client
            .get(format!("https://{admin}{path}"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(call("/logs", TOKEN).await.unwrap().status(), 200);
    assert_eq!(call("/fault", FAULT_TOKEN).await.unwrap().status(), 200);
    assert_eq!(call("/fault", TOKEN).await.unwrap().status(), 403);
    assert_eq!(call("/logs", FAULT_TOKEN).await.unwrap().status(), 403);
    for guess in 0..8 {
        let response = call("/logs", &format!("guess-{guess:020}")).await.unwrap();
        assert_eq!(response.status(), 403);
    }
    // Ten failures in the window (two out of scope, eight wrong): now even the right token waits.
    let braked = call("/logs", TOKEN).await.unwrap();
    assert_eq!(braked.status(), 429);
    let retry_after: u64 = braked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = braked.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many failed attempts"),
        "{body}"
    );
    let page = agent.scrape().await;
    assert_eq!(
        page.value("agent_admin_auth_failures_total{reason=\"wrong\"}"),
        8.0
    );
    assert_eq!(
        page.value("agent_admin_auth_failures_total{reason=\"scope\"}"),
        2.0
    );
    assert_eq!(
        page.value("agent_admin_auth_failures_total{reason=\"throttled\"}"),
        1.0
    );
    assert!(!page.text.contains(TOKEN) && !page.text.contains(FAULT_TOKEN));
}

/// Connections that never finish their handshake hold at most the listener's cap, each for at
/// most the handshake timeout; the metadata API does not notice, and the admin API serves again
/// as soon as they are gone.
#[tokio::test]
async fn unfinished_handshakes_are_bounded_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "admin", &[]);
    let agent = https_agent(&cert, &key);
    let admin = agent.admin.unwrap();
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        // The first bytes of a TLS record, then nothing.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &[0x16, 0x03, 0x01]).await;
        held.push(stream);
    }
    // The metadata API answers as usual meanwhile.
    let started = std::time::Instant::now();
    let answer = agent.instance("/compute/vmId", "&format=text").await;
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    testkit::eventually_async(
        "connections over the cap closed at accept",
        Duration::from_secs(10),
        || async {
            agent
                .scrape()
                .await
                .value("agent_admin_connections_refused_total{reason=\"cap\"}")
                >= 100.0
        },
    )
    .await;
    // The held ones are closed by the server at the handshake timeout.
    let mut first = held.swap_remove(0);
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::io::AsyncReadExt::read(&mut first, &mut buffer),
    )
    .await
    .expect("the server closed a stalled handshake within its timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(held);
    let client = client_trusting(&dir.path().join("ca.pem"));
    testkit::eventually_async(
        "the admin API serving again",
        Duration::from_secs(10),
        || async {
            client
                .get(format!("https://{admin}/logs"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert!(
        agent
            .scrape()
            .await
            .value("agent_admin_connections_refused_total{reason=\"handshake\"}")
            >= 1.0
    );
}

/// Refused at start, with the reason and without the secret: an admin API off loopback without
/// TLS, a token file or key file others can read, the same token for both scopes.
#[test]
fn unsafe_admin_settings_are_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "admin", &[]);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = std::process::Command::new(testkit::process::workspace_binary("agent"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let off_loopback = run(
        &["--admin-listen", "0.0.0.0:0"],
        &[("AGENT_ADMIN_TOKEN", TOKEN)],
    );
    assert!(
        off_loopback.contains("is not a loopback address and the admin API has no TLS"),
        "{off_loopback}"
    );
    let readable = run(
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        readable.contains("is accessible by other users (mode 644)") && !readable.contains(TOKEN),
        "{readable}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let open_key = run(
        &[
            "--admin-listen",
            "0.0.0.0:0",
            "--admin-tls-cert",
            cert.to_str().unwrap(),
            "--admin-tls-key",
            key.to_str().unwrap(),
        ],
        &[("AGENT_ADMIN_TOKEN", TOKEN)],
    );
    assert!(open_key.contains("--admin-tls-key"), "{open_key}");
    let same = run(
        &["--admin-listen", "127.0.0.1:0"],
        &[
            ("AGENT_ADMIN_TOKEN", TOKEN),
            ("AGENT_ADMIN_FAULT_TOKEN", TOKEN),
        ],
    );
    assert!(
        same.contains("a token of its own") && !same.contains(TOKEN),
        "{same}"
    );
    // Secrets are not flags: `--admin-token` does not exist (arguments are visible in `ps`).
    let flag = std::process::Command::new(testkit::process::workspace_binary("agent"))
        .args(["--admin-token", TOKEN])
        .output()
        .unwrap();
    assert_eq!(flag.status.code(), Some(2));
    let help = std::process::Command::new(testkit::process::workspace_binary("agent"))
        .env("AGENT_ADMIN_TOKEN", TOKEN)
        .env("AGENT_KAFKA_SASL_PASSWORD", "kafka-password-in-env")
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--admin-tls-cert") && help.contains("--kafka-sasl-password-file"));
    assert!(!help.contains(TOKEN) && !help.contains("kafka-password-in-env"));
}
