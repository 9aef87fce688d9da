//! Callers that try to take the metadata API from the others: idle and slow connections past the
//! open-file limit, huge query strings, requests hyper itself refuses. Each bound is shown holding
//! while a normal caller is still answered.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{Agent, http::raw_request};

/// A normal request on a fresh connection: (status, time to answer).
fn normal_request(addr: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = raw_request(
        addr,
        b"GET /metadata/instance/compute/vmId?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
    );
    (status, started.elapsed())
}

fn open_idle(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect()
}

/// Whether the server closed this connection (a read returns end of file or an error).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_and_slow_connections_past_the_file_limit_do_not_starve_a_normal_caller() {
    // The attacker's side needs more than 1,100 descriptors of its own.
    let agent = Agent::builder()
        .open_file_limit(1024)
        .args([
            "--rate-limit",
            "0",
            "--idle-timeout",
            "60s",
            "--header-read-timeout",
            "60s",
        ])
        .start();
    let mut idle = open_idle(agent.api, 1100);
    assert_eq!(idle.len(), 1100);
    // 300 slowloris connections: a request head started, one byte at a time.
    let mut slow = open_idle(agent.api, 300);
    for stream in &mut slow {
        let _ = stream
            .write_all(b"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\n");
    }
    for _ in 0..3 {
        let (status, took) = normal_request(agent.api);
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "answered in {took:?}");
    }
    let scrape = testkit::block_on(agent.scrape());
    assert!(
        scrape.value(r#"imds_connections_closed_total{reason="evicted"}"#) >= 400.0,
        "{}",
        scrape.text
    );
    // The cap held: the agent never had more connections than the limit allows.
    assert!(scrape.value("imds_open_connections") <= 1024.0 - 128.0);
    drop(idle.drain(..));
    drop(slow);
}

#[test]
fn idle_and_header_timeouts_close_connections() {
    let agent = Agent::builder()
        .args([
            "--rate-limit",
            "0",
            "--idle-timeout",
            "1s",
            "--header-read-timeout",
            "1s",
        ])
        .start();
    let mut idle = TcpStream::connect(agent.api).unwrap();
    let mut slow = TcpStream::connect(agent.api).unwrap();
    slow.write_all(b"GET /metadata/versions HTTP/1.1\r\n")
        .unwrap();
    // A keep-alive connection that made one request and went quiet.
    let mut kept = TcpStream::connect(agent.api).unwrap();
    kept.write_all(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    testkit::stays(
        "the idle connection open before the idle timeout",
        Duration::from_millis(300),
        || !closed_by_server(&mut idle),
    );
    testkit::eventually(
        "the idle connection's closing",
        Duration::from_secs(10),
        || closed_by_server(&mut idle),
    );
    // Both timeouts are one second, started a few milliseconds apart: the slow head may close
    // just after the idle connection.
    testkit::eventually(
        "the slow request head's closing",
        Duration::from_secs(10),
        || closed_by_server(&mut slow),
    );
    let mut rest = Vec::new();
    let _ = kept.read_to_end(&mut rest);
    let scrape = testkit::block_on(agent.scrape());
    assert_eq!(
        scrape.value(r#"imds_connections_closed_total{reason="idle_timeout"}"#),
        2.0
    );
    assert_eq!(
        scrape.value(r#"imds_connections_closed_total{reason="header_timeout"}"#),
        1.0
    );
    assert_eq!(normal_request(agent.api).0, 200);
}

#[test]
fn thousands_of_parameters_are_refused_at_once_with_json() {
    let agent = Agent::start_unlimited();
    // 13,000 distinct names of one to three characters: a 65 KB URI, as in the report.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let name = |mut i: usize| {
        let mut name = String::new();
        loop {
            name.push(ALPHABET[i % 62] as char);
            i /= 62;
            if i == 0 {
                return name;
            }
            i -= 1;
        }
    };
    let names: String = (0..13_000).map(|i| name(i) + "=&").collect();
    let request = format!(
        "GET /metadata/instance?{names}api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n"
    );
    assert!(
        request.len() > 50_000 && request.len() < 65_534,
        "{}",
        request.len()
    );
    let started = Instant::now();
    let (status, body) = raw_request(agent.api, request.as_bytes());
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (
            400,
            json!({"error": "Bad request. More than 32 query parameters"})
        )
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn requests_hyper_refuses_get_json_errors_too() {
    let agent = Agent::start_unlimited();
    let long_uri = format!(
        "GET /metadata/instance/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let huge_header = format!(
        "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"BLAH\r\n\r\n",
            400,
            "Bad request. The request is not valid HTTP/1.1",
        ),
        (
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            400,
            "Bad request. The request is not valid HTTP/1.1",
        ),
        (
            long_uri.as_bytes(),
            414,
            "Bad request. The request line is too long",
        ),
        (
            huge_header.as_bytes(),
            431,
            "Bad request. The request headers are too large",
        ),
    ];
    for (request, expected_status, message) in cases {
        let mut stream = TcpStream::connect(agent.api).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(request);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {expected_status} ")),
            "{:?}: {head}",
            String::from_utf8_lossy(&request[..request.len().min(40)])
        );
        assert!(
            head.contains("content-type: application/json; charset=utf-8"),
            "{head}"
        );
        assert!(head.contains("x-ms-request-id: "), "{head}");
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({ "error": message })
        );
    }
    assert_eq!(normal_request(agent.api).0, 200);
}

#[tokio::test]
async fn a_large_document_asked_by_many_callers_at_once_is_rendered_once() {
    // A 15 MB document (under the 16 MiB cap): 120,000 tags of about 120 bytes.
    let dir = tempfile::tempdir().unwrap();
    let tags: Vec<Value> = (0..120_000)
        .map(|i| json!({"name": format!("tag-{i:06}"), "value": "v".repeat(96)}))
        .collect();
    let document = json!({"compute": {"name": "big", "tagsList": tags}, "network": {}});
    let text = document.to_string();
    assert!(
        text.len() > 15_000_000 && text.len() < 16 << 20,
        "{}",
        text.len()
    );
    let path = dir.path().join("instance.json");
    std::fs::write(&path, &text).unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata", path.to_str().unwrap()])
        .start();
    let url = agent.url("/metadata/instance?api-version=2021-02-01");
    // One answer first: the document is loaded and its parsed form in memory.
    let first = testkit::http::client()
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let expected_len = first.bytes().await.unwrap().len();
    let (before, _) = agent.memory();

    let callers: Vec<_> = (0..200)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut response = testkit::http::client()
                    .get(url)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let mut bytes = 0;
                // Read and dropped chunk by chunk: the test itself holds no 200 copies.
                while let Some(chunk) = response.chunk().await.unwrap() {
                    bytes += chunk.len();
                }
                (status, bytes)
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), (200, expected_len));
    }
    let (_, peak) = agent.memory();
    // One shared 15 MB answer plus per-connection buffers; rendered per caller it was 3 GB.
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 400 << 20,
        "200 callers grew the agent by {} MB (from {} MB)",
        grown >> 20,
        before >> 20
    );
}

/// Mutations of HTTP requests, seeded: the shared ones (`testkit::mutation`), and a header
/// line doubled.
struct Mutator(testkit::mutation::Seeded);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    fn mutate(&mut self, request: &[u8]) -> Vec<u8> {
        if self.below(6) > 0 {
            return self.0.mutate(request);
        }
        let mut out = request.to_vec();
        let at = self.below(out.len());
        let line_end = out[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(out.len(), |p| at + p + 2);
        let line_start = out[..at]
            .windows(2)
            .rposition(|w| w == b"\r\n")
            .map_or(0, |p| p + 2);
        let line = out[line_start..line_end].to_vec();
        out.splice(line_start..line_start, line);
        out
    }
}

/// Sends `request` on a fresh connection (its write side then closed) and returns what came
/// back: `None` if the connection closed without an answer (a request cut short).
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    // The first answer only (what follows a complete request is answered as the next one).
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(rest.len());
    Some((status, rest[..length.min(rest.len())].to_owned()))
}

/// Mutated requests through the metadata and the admin APIs: every answer is a valid HTTP
/// answer below 500, every error a JSON body, and both APIs still serve afterwards.
#[tokio::test]
async fn mutated_requests_get_4xx_json_never_5xx_and_the_agent_keeps_serving() {
    const TOKEN: &str = "mutation-admin-token-0123456789";
    let mut mutator = Mutator(testkit::mutation::Seeded::from_env());
    let seed = mutator.0.seed();
    let cases = testkit::mutation::cases(300);
    let agent = Agent::builder()
        .env("AGENT_ADMIN_TOKEN", TOKEN)
        .args(["--rate-limit", "0", "--admin-listen", "127.0.0.1:0"])
        .start();
    let admin = agent.admin.unwrap();
    let metadata_requests: [&[u8]; 3] = [
        b"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n",
        b"GET /metadata/instance/compute/vmId?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        b"GET /metadata/versions HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    ];
    let admin_list =
        format!("GET /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let admin_fault = "PUT /fault HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope-nope-nope-nope\r\nContent-Length: 18\r\n\r\n{\"latency_ms\": 10}";
    let admin_requests: [&[u8]; 2] = [admin_list.as_bytes(), admin_fault.as_bytes()];
    let mut answered = 0;
    for case in 0..cases {
        let (addr, api, original) = if case % 2 == 0 {
            (agent.api, "metadata", metadata_requests[mutator.below(3)])
        } else {
            (admin, "admin", admin_requests[mutator.below(2)])
        };
        let request = mutator.mutate(original);
        let Some((status, body)) = exchange(addr, &request) else {
            continue;
        };
        answered += 1;
        let shown = String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
        assert!(
            status < 500,
            "{api} API answered {status} to {shown:?} (reproduce with MUTATION_SEED={seed}): {body}"
        );
        if status >= 400 && !(api == "admin" && status == 429) {
            let parsed: Value = serde_json::from_str(&body).unwrap_or_else(|_| {
                panic!("{api} API: {status} without a JSON body for {shown:?} (MUTATION_SEED={seed}): {body:?}")
            });
            assert!(
                parsed["error"].is_string(),
                "{parsed} (MUTATION_SEED={seed})"
            );
        }
    }
    assert!(
        answered > cases / 4,
        "only {answered} of {cases} mutated requests were answered"
    );
    // Both still serve, and the agent is still the same process.
    let (status, _) = normal_request(agent.api);
    assert_eq!(status, 200);
    let listing = testkit::http::client()
        .get(format!("http://{admin}/logs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    // The mutated tokens count as failed attempts from this address: the brake may still hold
    // (429 with its JSON), or the listing comes.
    let status = listing.status().as_u16();
    let body: Value = listing.json().await.unwrap();
    match status {
        200 => assert!(body["files"].is_array(), "{body}"),
        429 => assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("too many failed attempts")
        ),
        other => panic!("admin API after the mutations: {other} {body}"),
    }
    assert!(!agent.stderr().contains("panicked"), "{}", agent.stderr());
}

/// Answers are shared between callers by what they asked: a key holding `/` (asked as `%2F`) and
/// the same text as two segments are two answers, however they are asked in turn.
#[tokio::test]
async fn shared_answers_never_mix_paths_that_decode_alike() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(70_000);
    let document = json!({"compute": {"a/b": {"v": "slash", "pad": big}, "a": {"b": {"v": "nested", "pad": big}}}});
    let path = dir.path().join("instance.json");
    std::fs::write(&path, document.to_string()).unwrap();
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--metadata", path.to_str().unwrap()])
        .start();
    for _ in 0..2 {
        for (asked, expected) in [("/compute/a%2Fb", "slash"), ("/compute/a/b", "nested")] {
            let response = agent.instance(asked, "").await;
            assert_eq!(response.status(), 200, "{asked}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["v"], expected, "{asked}");
        }
    }
}
