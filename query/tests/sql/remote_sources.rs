//! `query` over sources that are not local directories: a real agent's admin API (the hours are
//! fetched into a cache, rolled ones kept, the open hour converted from its raw log) and an S3
//! object store (a real S3-compatible server, moto, started by the test).

use crate::fixtures::stdout;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::Agent;

const TOKEN: &str = "remote-query-token-0123456789";

fn query(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_query"))
        .env("QUERY_TOKEN", TOKEN)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}

/// An agent with one old hour (rolled to Parquet by the agent) and its own open hour.
fn agent_with_an_old_hour(lines: usize) -> Agent {
    let data = tempfile::tempdir().unwrap().keep();
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!(
            r#"{{"seq":{},"id":"01930000-0000-7000-8000-{i:012x}","timestamp":"2025-05-05T05:{:02}:00Z","level":"INFO","target":"imds::request","message":"request served","cluster":"test-cluster","machine":"test-host","status":200}}"#,
            i + 1,
            i % 60
        ));
        text.push('\n');
    }
    std::fs::write(logs.join("agent.2025-05-05-05.log"), text).unwrap();
    let agent = Agent::builder()
        .data_dir(&data)
        .env("AGENT_ADMIN_TOKEN", TOKEN)
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--retain-raw",
            "1h",
            "--retain-parquet",
            "100000h",
        ])
        .start();
    let rolled = data.join("parquet/date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet");
    testkit::eventually(
        "the old hour's roll and its raw file's retirement",
        Duration::from_secs(30),
        || rolled.exists() && !logs.join("agent.2025-05-05-05.log").exists(),
    );
    agent
}

#[test]
fn an_agents_hours_are_fetched_once_and_queried_with_the_open_hour() {
    let agent = agent_with_an_old_hour(120);
    let url = format!("http://{}", agent.admin.unwrap());
    let cache = tempfile::tempdir().unwrap();
    let per_hour = |output: &Output| -> Vec<(String, String, usize)> {
        stdout(output)
            .lines()
            .skip(1)
            .map(|l| {
                let parts: Vec<&str> = l.split(',').collect();
                (
                    parts[0].to_owned(),
                    parts[1].to_owned(),
                    parts[2].parse().unwrap(),
                )
            })
            .collect()
    };
    let sql = "SELECT date, hour, count(*) AS n FROM logs GROUP BY date, hour ORDER BY date, hour";
    let args = [
        "--data",
        &url,
        "--fetch-since",
        "20000days",
        "--format",
        "csv",
        sql,
    ];
    let hours = per_hour(&query(&args, cache.path()));
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!(hours[0], ("2025-05-05".into(), "05".into(), 120));
    let now = chrono::Utc::now();
    assert_eq!(
        (hours[1].0.as_str(), hours[1].1.as_str()),
        (
            now.format("%Y-%m-%d").to_string().as_str(),
            now.format("%H").to_string().as_str()
        )
    );
    assert!(hours[1].2 > 0, "the open hour's raw log was converted");

    // The rolled file is cached byte for byte and not fetched again.
    let host = format!("127.0.0.1_{}", agent.admin.unwrap().port());
    let cached = cache
        .path()
        .join(&host)
        .join("date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet");
    let original = agent
        .data_dir
        .join("parquet/date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet");
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        std::fs::read(&original).unwrap()
    );
    let fetched_at = std::fs::metadata(&cached).unwrap().modified().unwrap();
    let again = per_hour(&query(&args, cache.path()));
    assert_eq!(again[0], hours[0]);
    assert!(again[1].2 >= hours[1].2, "the open hour only grows");
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        fetched_at
    );

    // A download cut halfway (its first half kept, with the agent's tag for it) resumes with a
    // range request, and the file comes out byte for byte.
    let original_bytes = std::fs::read(&original).unwrap();
    let etag = testkit::block_on(async {
        testkit::http::client()
            .get(format!(
                "{url}/logs/parquet/date=2025-05-05/hour=05/test-host.2025-05-05-05.parquet"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned()
    });
    std::fs::remove_file(&cached).unwrap();
    let hour_dir = cached.parent().unwrap();
    let half = original_bytes.len() / 2;
    std::fs::write(
        hour_dir.join(".partial-test-host.2025-05-05-05.parquet"),
        &original_bytes[..half],
    )
    .unwrap();
    std::fs::write(
        hour_dir.join(".partial-test-host.2025-05-05-05.parquet.etag"),
        &etag,
    )
    .unwrap();
    let resumed = per_hour(&query(&args, cache.path()));
    assert_eq!(resumed[0], hours[0]);
    assert_eq!(std::fs::read(&cached).unwrap(), original_bytes);
    assert_eq!(
        testkit::files_under(hour_dir).len(),
        1,
        "no partial file is left: {:?}",
        testkit::files_under(hour_dir)
    );
    testkit::eventually(
        "the resumed fetch in the access log",
        Duration::from_secs(5),
        || {
            agent.stderr().lines().any(|l| {
                l.contains("path=/logs/parquet/date=2025-05-05/hour=05/")
                    && l.contains("status=206")
            })
        },
    );

    // The drill-down over an agent: its own range is fetched; the agent's start is in it.
    let logs = stdout(&query(
        &[
            "logs",
            "--data",
            &url,
            "--cluster",
            "test-cluster",
            "--since",
            "1h",
            "--format",
            "csv",
        ],
        cache.path(),
    ));
    assert!(logs.contains("agent started"), "{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("2025-05-05")),
        "the old hour is outside the last hour: {logs}"
    );

    // A wrong token (from a private file): refused, with what to do.
    let wrong = tempfile::tempdir().unwrap();
    let wrong_token = wrong.path().join("token");
    std::fs::write(&wrong_token, "wrong-token-wrong-token\n").unwrap();
    std::fs::set_permissions(
        &wrong_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let refused = query(
        &[
            "--data",
            &url,
            "--token-file",
            wrong_token.to_str().unwrap(),
            "SELECT 1",
        ],
        cache.path(),
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused the token"), "{stderr}");
}

/// moto's S3 server on a free port, stopped on drop.
#[test]
fn an_s3_delta_store_answers_like_the_same_local_store() {
    let server = testkit::s3::S3Server::start();
    // A warm store written locally as the collector writes it (two commits, so two files per
    // directory), then uploaded as-is, log and all.
    let local = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for hour in 0..3u32 {
        for cluster in ["east", "west"] {
            rows.extend((0..(10 + hour * 5)).map(|i| {
                let mut record = logrecord::LogRecord::from_json_line(&format!(
                    r#"{{"seq":{i},"id":"{}","timestamp":"2026-03-01T{hour:02}:{:02}:00Z","level":"INFO","target":"imds::request","message":"request served","cluster":"{cluster}","machine":"{cluster}-1","status":200}}"#,
                    logrecord::Uuid::from_u64_pair(u64::from(cluster.as_bytes()[0]) * 100 + u64::from(hour), u64::from(i)),
                    i % 60
                ))
                .unwrap();
                record.latency_us = Some(u64::from(i));
                record
            }));
        }
    }
    crate::fixtures::write_delta(local.path(), &rows, 2);
    // A file no commit names (a killed writer's): must not be counted on S3 either.
    logrecord::parquet_file::write(
        &local
            .path()
            .join("date=2026-03-01/hour=00/cluster=east/part-killed.parquet"),
        &mut rows[..10].to_vec(),
    )
    .unwrap();

    let store = server.upload_dir(local.path(), "logs-bucket", "store");

    let sql = "SELECT cluster, hour, count(*) AS n, sum(latency_us) AS total FROM logs GROUP BY cluster, hour ORDER BY cluster, hour";
    let run = |data: &str| -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_query"))
            .args(["--data", data, "--format", "csv", sql])
            .envs(server.env())
            .output()
            .unwrap();
        stdout(&output)
    };
    let from_s3 = run(&store);
    let from_disk = run(&local.path().display().to_string());
    assert_eq!(from_s3, from_disk);
    let mut expected = String::from("cluster,hour,n,total\n");
    for cluster in ["east", "west"] {
        for hour in 0..3u32 {
            let n = 10 + hour * 5;
            expected.push_str(&format!(
                "{cluster},{hour:02},{n},{}\n",
                (0..n).map(u64::from).sum::<u64>()
            ));
        }
    }
    assert_eq!(from_s3, expected);
}

/// An agent's admin API over HTTPS: fetched with its CA; a certificate from another CA or for
/// another name is refused with the reason, and so are https without a CA and http off loopback.
#[test]
fn an_agent_over_https_is_trusted_only_through_its_ca() {
    use testkit::tls::certificate;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path(), "admin", &[]);
    let (wrong_cert, wrong_key) =
        certificate(certs.path(), "elsewhere", &["DNS:elsewhere.example"]);
    let other_ca = tempfile::tempdir().unwrap();
    certificate(other_ca.path(), "unrelated", &[]);
    let start = |cert: &Path, key: &Path| Agent::builder().admin_https(cert, key, TOKEN).start();
    let agent = start(&cert, &key);
    let url = format!("https://{}", agent.admin.unwrap());
    let cache = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca.pem");
    let sql = "SELECT count(*) > 0 AS logged FROM logs WHERE message = 'agent started'";
    let ok = query(
        &[
            "--data",
            &url,
            "--ca-file",
            ca.to_str().unwrap(),
            "--format",
            "csv",
            sql,
        ],
        cache.path(),
    );
    assert_eq!(stdout(&ok), "logged\ntrue\n");

    let refused = |args: &[&str], expected: &str| {
        let output = query(args, cache.path());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    };
    let unrelated_ca = other_ca.path().join("ca.pem");
    refused(
        &[
            "--data",
            &url,
            "--ca-file",
            unrelated_ca.to_str().unwrap(),
            sql,
        ],
        // A CA of the same name but another key: its signature does not verify.
        "invalid peer certificate: BadSignature",
    );
    refused(&["--data", &url, sql], "need --ca-file");
    let misnamed = start(&wrong_cert, &wrong_key);
    let misnamed_url = format!("https://{}", misnamed.admin.unwrap());
    refused(
        &[
            "--data",
            &misnamed_url,
            "--ca-file",
            ca.to_str().unwrap(),
            sql,
        ],
        "certificate not valid for name",
    );
    refused(
        &["--data", "http://192.0.2.1:9000", sql],
        "plain http sends the token and the logs in clear",
    );
}
