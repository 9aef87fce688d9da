//! `query --cluster` and `query --cluster serve` on a real Ballista cluster: the project's
//! scheduler and two executors as processes on loopback, over a warm store (a Delta table written
//! as the collector writes it) on the moto S3 server, which every executor reads. The seeds'
//! analyses give exactly the in-process answers over the same table, through the CLI and through
//! psql and psycopg; a running server sees each new commit; a bad statement is a clear error; an
//! executor killed mid-query never gives a wrong answer, to the CLI or to a server's client (the
//! statement runs again, or fails clearly).
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};
use logrecord::{Level, LogRecord, Uuid};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::process::{Spawned, spawn_listening, workspace_binary};
use testkit::s3::S3Server;

/// A port free at the time of asking (Ballista's processes take fixed ports).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler and two executors, killed when dropped.
struct Cluster {
    _scheduler: Spawned,
    executors: Vec<Spawned>,
    url: String,
    _work: tempfile::TempDir,
}

impl Cluster {
    fn start(s3: &S3Server) -> Cluster {
        let work = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_query-scheduler"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // A killed executor is dropped within 10 s (heartbeats every 5 s).
            .args(["--executor-timeout", "10s"])
            .envs(s3.env())
            .env_remove("RUST_LOG");
        let (scheduler, _) = spawn_listening(command, "query-scheduler", &["scheduler listening"]);
        let executors = (0..2)
            .map(|i| {
                let dir = work.path().join(format!("executor-{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                let mut command = Command::new(env!("CARGO_BIN_EXE_query-executor"));
                command
                    .args(["--scheduler", &format!("127.0.0.1:{port}")])
                    .args(["--port", &free_port().to_string()])
                    .args(["--grpc-port", &free_port().to_string()])
                    .args(["--tasks", "2", "--work-dir"])
                    .arg(&dir)
                    .envs(s3.env())
                    .env_remove("RUST_LOG");
                spawn_listening(command, "query-executor", &["executor starting"]).0
            })
            .collect();
        Cluster {
            _scheduler: scheduler,
            executors,
            url: format!("df://127.0.0.1:{port}"),
            _work: work,
        }
    }
}

/// A `query` command with the S3 server's settings.
fn query_command(s3: &S3Server, args: &[&str]) -> Command {
    let mut command = Command::new(workspace_binary("query"));
    command.args(args).envs(s3.env());
    command
}

/// Runs `query` to its end, with the S3 server's settings.
fn query(s3: &S3Server, args: &[&str]) -> Output {
    query_command(s3, args).output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// 2 days x 3 hours x machines m1, m2 (cluster east) and m3 (west) x 20 events: statuses,
/// paths, api-versions and latencies that differ by cluster.
fn records() -> Vec<LogRecord> {
    let mut records = Vec::new();
    for day in 1..=2u32 {
        for hour in 0..3u32 {
            for (cluster, machine) in [("east", "m1"), ("east", "m2"), ("west", "m3")] {
                for i in 0..20u32 {
                    let status = [200u16, 200, 200, 404, 500][(i % 5) as usize];
                    let n = u64::from(day * 10_000 + hour * 100 + i);
                    records.push(LogRecord {
                        request_id: Some(Uuid::from_u64_pair(0x4000, n)),
                        method: Some("GET".into()),
                        path: Some(
                            ["/metadata/instance", "/metadata/instance/compute"][(i % 2) as usize]
                                .into(),
                        ),
                        api_version: Some(
                            ["2021-02-01", "2023-07-01", "2019-06-01"][(i % 3) as usize].into(),
                        ),
                        format: Some("json".into()),
                        status: Some(status),
                        latency_us: Some(
                            u64::from(i * 37 % 500) + if cluster == "east" { 0 } else { 900 },
                        ),
                        response_bytes: Some(100),
                        caller: Some("10.0.0.4".into()),
                        ..LogRecord::new(
                            n,
                            Uuid::from_u64_pair(u64::from(machine.as_bytes()[1]), n),
                            Utc.with_ymd_and_hms(2026, 3, day, hour, i * 2, 0).unwrap(),
                            if status == 500 {
                                Level::Error
                            } else {
                                Level::Info
                            },
                            "imds::request",
                            format!("request {i} served with {status}"),
                            cluster,
                            machine,
                        )
                    });
                }
            }
        }
    }
    records
}

/// Writes `records` as the collector does (one file per `date=/hour=/cluster=` directory, one
/// commit) into a Delta table at `root`.
fn write_delta(root: &Path, records: &[LogRecord]) {
    let url = warm_table::location(root.to_str().unwrap()).unwrap();
    let mut records = records.to_vec();
    testkit::run(async move { warm_table::write_records(&url, &mut records).await.unwrap() });
}

/// The warm store, written as the collector writes it, in a directory and the same on S3.
struct Store {
    local: tempfile::TempDir,
    s3: S3Server,
    url: String,
}

impl Store {
    fn new() -> Store {
        let local = tempfile::tempdir().unwrap();
        write_delta(local.path(), &records());
        let s3 = S3Server::start();
        let url = s3.upload_dir(local.path(), "logs", "warm");
        Store { local, s3, url }
    }

    fn local(&self) -> &str {
        self.local.path().to_str().unwrap()
    }
}

/// The seeds' analyses, each with an order that makes its answer one text.
const ANALYSES: &[&str] = &[
    "SELECT status, count(*) AS n FROM logs GROUP BY status ORDER BY status",
    "SELECT path, count(*) AS n FROM logs GROUP BY path ORDER BY path",
    "SELECT api_version, count(*) AS n FROM logs GROUP BY api_version ORDER BY api_version",
    "SELECT cluster, date, approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_us) AS p90 \
     FROM logs GROUP BY cluster, date ORDER BY cluster, date",
    "SELECT machine, count(*) AS n FROM logs WHERE message ~ 'request 1[0-9] served with 404' \
     GROUP BY machine ORDER BY machine",
    "SELECT id, \"timestamp\", status FROM logs WHERE machine = 'm2' AND date = '2026-03-02' \
     AND hour = '01' ORDER BY \"timestamp\"",
    "SELECT count(*) AS n, max(seq) AS last FROM logs WHERE date = '2030-01-01'",
    "SELECT cluster, pattern, count(*) AS n FROM (SELECT cluster, log_pattern(message) OVER \
     (PARTITION BY cluster ORDER BY \"timestamp\", machine, seq) AS pattern FROM logs) \
     GROUP BY cluster, pattern ORDER BY cluster, pattern",
];

/// `query --cluster` running `sql` over the store on S3, answering in CSV.
fn on_cluster_command(cluster: &Cluster, store: &Store, sql: &str) -> Command {
    query_command(
        &store.s3,
        &[
            "--cluster",
            &cluster.url,
            "--data",
            &store.url,
            "--format",
            "csv",
            sql,
        ],
    )
}

/// Runs `sql` with `query --cluster` over the store on S3, to its end.
fn on_cluster(cluster: &Cluster, store: &Store, sql: &str) -> Output {
    on_cluster_command(cluster, store, sql).output().unwrap()
}

/// Waits until the cluster answers (executors register with the scheduler after it starts).
fn wait_until_ready(cluster: &Cluster, store: &Store) {
    testkit::eventually(
        "the cluster's first answer",
        Duration::from_secs(90),
        || {
            on_cluster(cluster, store, "SELECT count(*) FROM logs")
                .status
                .success()
        },
    );
}

#[test]
fn the_cluster_answers_every_analysis_exactly_as_query_in_process() {
    let store = Store::new();
    let cluster = Cluster::start(&store.s3);
    wait_until_ready(&cluster, &store);
    for sql in ANALYSES {
        // In-process over the same table in a directory.
        let here = stdout_of(&query(
            &store.s3,
            &["--data", store.local(), "--format", "csv", sql],
        ));
        let there = stdout_of(&on_cluster(&cluster, &store, sql));
        assert_eq!(there, here, "{sql}");
        assert!(here.lines().count() > 1, "{sql} answers something: {here}");
    }
    // And row for row what was written: 360 rows, each id once.
    let counts = stdout_of(&on_cluster(
        &cluster,
        &store,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM logs",
    ));
    assert_eq!(counts, "n,ids\n360,360\n");
    // A one-hour lookup sends the cluster that hour's files only (both clusters'), not the table's.
    let explained = stdout_of(&on_cluster(
        &cluster,
        &store,
        "EXPLAIN SELECT count(*) FROM logs WHERE date = '2026-03-02' AND hour = '01'",
    ));
    for wanted in ["hour=01/cluster=east", "hour=01/cluster=west"] {
        assert!(explained.contains(wanted), "{wanted}: {explained}");
    }
    for pruned in ["date=2026-03-01", "hour=00", "hour=02"] {
        assert!(!explained.contains(pruned), "{pruned}: {explained}");
    }
}

#[test]
fn a_bad_statement_is_a_clear_error_and_writes_are_refused() {
    let store = Store::new();
    let cluster = Cluster::start(&store.s3);
    wait_until_ready(&cluster, &store);
    let unknown = on_cluster(&cluster, &store, "SELECT nope FROM logs");
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("nope") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let write = on_cluster(&cluster, &store, "DROP TABLE logs");
    assert_eq!(write.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&write.stderr).contains("read-only"));
    // Without a scheduler there: a clear error, not a hang.
    let nowhere = query(
        &store.s3,
        &[
            "--cluster",
            &format!("df://127.0.0.1:{}", free_port()),
            "--data",
            &store.url,
            "SELECT 1",
        ],
    );
    assert_eq!(nowhere.status.code(), Some(1));
}

#[test]
fn an_executor_killed_mid_query_never_gives_a_wrong_answer() {
    let store = Store::new();
    let mut cluster = Cluster::start(&store.s3);
    wait_until_ready(&cluster, &store);
    // 39 million joined rows grouped by machine: half a minute of work (debug build) over both
    // executors, with shuffles between stages (what a lost executor takes with it), still
    // running when the scheduler drops the killed executor 10 s after the kill.
    let sql = "SELECT a.machine, count(*) AS n FROM logs a CROSS JOIN logs b \
               CROSS JOIN (SELECT * FROM logs LIMIT 300) c GROUP BY a.machine ORDER BY a.machine";
    // The same statement through `query serve --cluster` at the same time.
    let server = Serve::start(
        &store.s3,
        &["--cluster", &cluster.url, "--data", &store.url],
    );
    let mut through_server = psql_command(&server, &[sql]);
    let served = std::thread::spawn(move || through_server.output().unwrap());
    let running = on_cluster_command(&cluster, &store, sql)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once it is working on the statement (a second of CPU since the statements began).
    let idle = cluster.executors[1].cpu_time();
    testkit::eventually(
        "the second executor's work on the statement",
        Duration::from_secs(120),
        || cluster.executors[1].cpu_time() > idle + Duration::from_secs(1),
    );
    cluster.executors[1].kill();
    let started = std::time::Instant::now();
    let ended = std::thread::spawn(move || running.wait_with_output().unwrap());
    testkit::eventually("the statements' end", Duration::from_secs(300), || {
        ended.is_finished() && served.is_finished()
    });
    let served = served.join().unwrap();
    let stdout = String::from_utf8_lossy(&served.stdout);
    let stderr = String::from_utf8_lossy(&served.stderr);
    eprintln!("served: {stdout}{stderr}\nserver: {}", server.log());
    if stderr.is_empty() {
        assert_eq!(stdout, "machine,n\nm1,12960000\nm2,12960000\nm3,12960000\n");
    } else {
        assert!(stderr.starts_with("ERROR:  "), "{stderr}");
        assert!(stdout.is_empty(), "no partial answer: {stdout}");
    }
    let output = ended.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("query ended after {:?}: {stderr}", started.elapsed());
    if output.status.success() {
        // Run again on the executor left: 120 rows per machine x 360 x 300.
        assert!(
            stderr.contains("were lost while the statement ran"),
            "{stderr}"
        );
        assert_eq!(
            stdout, "machine,n\nm1,12960000\nm2,12960000\nm3,12960000\n",
            "{stderr}"
        );
    } else {
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("query: ") && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "no partial answer: {stdout}");
    }
    // The executor left answers the next statement on its own.
    let counts = stdout_of(&on_cluster(
        &cluster,
        &store,
        "SELECT count(*) AS n FROM logs",
    ));
    assert_eq!(counts, "n\n360\n");
}

const PASSWORD: &str = "correct horse battery";

/// A running `query serve`, killed when dropped.
struct Serve {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Serve {
    /// `query <args> serve` on a free loopback port, once it accepts connections.
    fn start(s3: &S3Server, args: &[&str]) -> Serve {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = query_command(s3, args)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("QUERY_SERVE_PASSWORD", PASSWORD)
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        testkit::eventually("query serve listening", Duration::from_secs(60), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "query serve exited ({status}): {}",
                    std::fs::read_to_string(log.path()).unwrap()
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Serve { child, port, log }
    }

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=logs dbname=logs password='{PASSWORD}'",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql (simple protocol) running `statements` on one session, CSV out, going on after errors.
fn psql_command(server: &Serve, statements: &[&str]) -> Command {
    let mut command = Command::new("psql");
    command.args(["--csv", "-X", "-v", "ON_ERROR_STOP=0", &server.conninfo()]);
    for sql in statements {
        command.args(["-c", sql]);
    }
    command
}

/// Runs psql to its end (see [`psql_command`]).
fn psql(server: &Serve, statements: &[&str]) -> Output {
    psql_command(server, statements)
        .output()
        .expect("psql: run scripts/install-test-deps (Debian's postgresql-client)")
}

/// psycopg 3 (extended protocol, named prepared statements, server-side parameters) running
/// `(sql, parameters)` on one session: one JSON line per statement.
fn psycopg(server: &Serve, statements: &serde_json::Value) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new(format!("{root}/.cache/psycopg/bin/python"))
        .arg(format!("{root}/query/tests/clients/psycopg_run.py"))
        .arg(server.conninfo())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("psycopg: run scripts/install-test-deps");
    use std::io::Write;
    let input = serde_json::to_vec(statements).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    stdout_of(&child.wait_with_output().unwrap())
}

#[test]
fn query_serve_on_the_cluster_answers_as_in_process_and_sees_each_new_commit() {
    let store = Store::new();
    let cluster = Cluster::start(&store.s3);
    wait_until_ready(&cluster, &store);
    let on_cluster = Serve::start(
        &store.s3,
        &["--cluster", &cluster.url, "--data", &store.url],
    );
    let in_process = Serve::start(&store.s3, &["--data", store.local()]);

    // Simple protocol: every analysis answers as the in-process server does, row for row.
    for sql in ANALYSES {
        let there = stdout_of(&psql(&on_cluster, &[sql]));
        let here = stdout_of(&psql(&in_process, &[sql]));
        assert_eq!(there, here, "{sql}");
        assert!(here.lines().count() > 1, "{sql} answers something: {here}");
    }
    // Extended protocol with parameters, as drivers send it.
    let prepared = serde_json::json!([
        [
            "SELECT cluster, count(*) AS n FROM logs WHERE machine = %s AND status = %s \
          GROUP BY cluster",
            ["m3", 404]
        ],
        [
            "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM logs WHERE date = %s",
            ["2026-03-02"]
        ],
    ]);
    assert_eq!(
        psycopg(&on_cluster, &prepared),
        "{\"columns\": [\"cluster\", \"n\"], \"rows\": [[\"west\", 24]]}\n\
         {\"columns\": [\"n\", \"ids\"], \"rows\": [[180, 180]]}\n"
    );
    // The catalog a client browses is the server's own (run in the server, not the cluster).
    let tables = psql(
        &on_cluster,
        &["SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"],
    );
    assert_eq!(stdout_of(&tables), "table_name\nlogs\n");

    // Bad statements are PostgreSQL errors and the session goes on.
    let session = psql(
        &on_cluster,
        &[
            "SELECT nope FROM logs",
            "DROP TABLE logs",
            "SELECT count(*) AS n FROM logs",
        ],
    );
    let stderr = String::from_utf8_lossy(&session.stderr);
    assert!(
        stderr.contains("nope") && stderr.contains("read-only"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&session.stdout), "n\n360\n");

    // The collector commits a week more while the server runs: the next statement sees it.
    let mut more = records();
    for r in &mut more {
        r.timestamp += chrono::Duration::days(7);
    }
    let before = testkit::files_under(store.local.path());
    write_delta(store.local.path(), &more);
    let mut new_files = testkit::files_under(store.local.path());
    new_files.retain(|file| !before.contains(file));
    store
        .s3
        .upload(store.local.path(), &new_files, "logs", "warm");
    let counts = psql(
        &on_cluster,
        &["SELECT count(*) AS n, count(DISTINCT date) AS days FROM logs"],
    );
    assert_eq!(
        stdout_of(&counts),
        "n,days\n720,4\n",
        "{}",
        on_cluster.log()
    );
}
