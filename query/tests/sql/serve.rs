//! `query serve` with real clients over loopback: psql (simple protocol), pgx v5 (the driver of
//! Grafana's PostgreSQL data source) and psycopg 3 (extended protocol, server-side parameters)
//! get the CLI's answers; what Grafana sends when a data source is saved and a dashboard loads
//! works; wrong passwords, plaintext where TLS is required, writes, bad SQL, statements over the
//! time or memory limit and connections over the cap are each a clean PostgreSQL error, and the
//! server goes on.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A running `query serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(store: &Path, args: &[&str]) -> Server {
        Self::try_start(store, args)
            .unwrap_or_else(|log| panic!("query serve did not start: {log}"))
    }

    /// Starts the server; `Err(log)` if it exits instead of listening.
    fn try_start(store: &Path, args: &[&str]) -> Result<Server, String> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_query"))
            .arg("--data")
            .arg(store)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("QUERY_SERVE_PASSWORD", PASSWORD)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let listening = testkit::eventually(
            "query serve's listening line (or its exit)",
            Duration::from_secs(60),
            || {
                let text = std::fs::read_to_string(&log).unwrap();
                let addr = text
                    .lines()
                    .find(|l| l.contains("serving table logs"))
                    .map(|line| {
                        let addr = line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("address="));
                        addr.unwrap().parse::<SocketAddr>().unwrap()
                    });
                match (addr, child.try_wait().unwrap()) {
                    (Some(addr), _) => Some(Ok(addr)),
                    (None, Some(_)) => Some(Err(text)),
                    (None, None) => None,
                }
            },
        );
        listening.map(|addr| Server {
            child,
            addr,
            log,
            _dir: dir,
        })
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn url(&self) -> String {
        format!(
            "postgres://logs:{}@{}/logs?sslmode=disable",
            PASSWORD.replace(' ', "%20"),
            self.addr
        )
    }

    pub(crate) fn conninfo(&self) -> String {
        self.conninfo_as("logs", PASSWORD)
    }

    fn conninfo_as(&self, user: &str, password: &str) -> String {
        format!(
            "host={} port={} user={user} dbname=logs password='{password}'",
            self.addr.ip(),
            self.addr.port()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql (Debian's postgresql-client) with `conninfo`, one `-c` per statement, CSV output.
pub(crate) fn psql(conninfo: &str, statements: &[&str]) -> Output {
    let mut command = Command::new("psql");
    command.args(["--csv", "-X", "-v", "ON_ERROR_STOP=0", conninfo]);
    for sql in statements {
        command.args(["-c", sql]);
    }
    command
        .output()
        .expect("psql: run scripts/install-test-deps (Debian's postgresql-client)")
}

fn go() -> PathBuf {
    let local = PathBuf::from("/usr/local/go/bin/go");
    if local.exists() {
        return local;
    }
    PathBuf::from("go")
}

/// The pgx client (`tests/clients/pgx`), built once per run.
fn pgx_run() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgx_run");
        let status = Command::new(go())
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/pgx"))
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .status()
            .expect("go: the machine's Go toolchain (/usr/local/go/bin/go or on PATH)");
        assert!(
            status.success(),
            "building the pgx client (scripts/install-test-deps)"
        );
        out
    })
}

/// Runs a client with `input` (JSON) on its stdin: one JSON result per line of its stdout.
fn run_client(mut command: Command, input: &impl serde::Serialize) -> Vec<Value> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{command:?}: {error} (run scripts/install-test-deps)"));
    let input = serde_json::to_vec(input).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines(&output.stdout)
}

/// Runs `statements` through pgx on one connection: one JSON result per statement.
fn pgx(url: &str, statements: &[&str]) -> Vec<Value> {
    let mut command = Command::new(pgx_run());
    command.arg(url);
    run_client(command, &statements)
}

/// Runs `(sql, parameters)` through psycopg 3 with prepared statements on one connection.
fn psycopg(conninfo: &str, statements: &[(&str, Value)]) -> Vec<Value> {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.cache/psycopg/bin/python"
    ));
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/psycopg_run.py"
        ))
        .arg(conninfo);
    run_client(command, &statements)
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A value as both sides can state it: numbers as f64, RFC 3339 times as epoch milliseconds.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(time) => serde_json::json!(time.timestamp_millis() as f64),
            Err(_) => value.clone(),
        },
        other => other.clone(),
    }
}

/// The CLI's rows for `sql` (JSON lines), canonical.
fn cli_rows(store: &Path, sql: &str) -> Vec<Vec<Value>> {
    let output = crate::fixtures::query(store, &["--format", "json", sql]);
    crate::fixtures::stdout(&output)
        .lines()
        .map(|l| {
            let row: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            row.values().map(canonical).collect()
        })
        .collect()
}

/// A client's rows, canonical; panics on an error result.
fn client_rows(result: &Value) -> Vec<Vec<Value>> {
    assert!(result.get("error").is_none(), "{result}");
    result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(canonical).collect())
        .collect()
}

fn error_code(result: &Value) -> &str {
    result["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {result}"))
}

pub(crate) fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::fixtures::write_delta(dir.path(), &crate::fixtures::records(), 2);
    dir
}

/// The seeds' analyses, each ordered so that both sides list rows alike.
const ANALYSES: &[&str] = &[
    "SELECT status, count(*) AS n FROM logs WHERE status IS NOT NULL GROUP BY status ORDER BY status",
    "SELECT path, count(*) AS n FROM logs GROUP BY path ORDER BY path",
    "SELECT api_version, count(*) AS n FROM logs GROUP BY api_version ORDER BY api_version",
    "SELECT cluster, approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_us) AS p90 FROM logs GROUP BY cluster ORDER BY cluster",
    "SELECT machine, count(*) AS n FROM logs WHERE message ~ 'request [0-4] served' GROUP BY machine ORDER BY machine",
    "SELECT timestamp, machine, level, message FROM logs WHERE cluster = 'c1' AND machine = 'm2' AND date = '2026-01-02' AND hour = '01' ORDER BY timestamp",
    "SELECT date_bin(INTERVAL '1 hour', timestamp) AS time, status, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
];

#[test]
fn every_client_gets_the_clis_answers() {
    let store = store();
    let server = Server::start(store.path(), &[]);

    let through_pgx = pgx(&server.url(), ANALYSES);
    for (sql, result) in ANALYSES.iter().zip(&through_pgx) {
        let expected = cli_rows(store.path(), sql);
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(client_rows(result), expected, "pgx: {sql}");
    }

    let with_parameters: Vec<(&str, Value)> = vec![
        (
            "SELECT machine, count(*) AS n FROM logs WHERE cluster = %s AND status = %s GROUP BY machine ORDER BY machine",
            serde_json::json!(["c1", 404]),
        ),
        (ANALYSES[0], serde_json::json!([])),
    ];
    let through_psycopg = psycopg(&server.conninfo(), &with_parameters);
    assert_eq!(
        client_rows(&through_psycopg[0]),
        cli_rows(
            store.path(),
            "SELECT machine, count(*) AS n FROM logs WHERE cluster = 'c1' AND status = 404 GROUP BY machine ORDER BY machine"
        )
    );
    assert_eq!(client_rows(&through_psycopg[0]).len(), 2);
    assert_eq!(
        client_rows(&through_psycopg[1]),
        cli_rows(store.path(), ANALYSES[0])
    );

    let output = psql(&server.conninfo(), &[ANALYSES[0]]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "status,n\n200,108\n404,36\n500,36\n"
    );
    assert_eq!(
        String::from_utf8(
            crate::fixtures::query(store.path(), &["--format", "csv", ANALYSES[0]]).stdout
        )
        .unwrap(),
        "status,n\n200,108\n404,36\n500,36\n"
    );

    // The session, every statement and its end are in the server's log.
    let log = server.log();
    assert!(log.contains("session started"), "{log}");
    assert!(log.contains("application=\"psql\""), "{log}");
    assert!(
        log.contains(&format!("statement: {}", ANALYSES[1])),
        "{log}"
    );
    assert!(log.contains("statement done"), "{log}");
}

/// What Grafana's PostgreSQL data source sends when it is saved (version detection) and when a
/// query editor lists tables and columns.
#[test]
fn grafanas_connection_and_catalog_queries_answer() {
    let store = store();
    let server = Server::start(store.path(), &[]);
    let grafana = [
        "SELECT 1",
        "SELECT version()",
        "SELECT current_setting('server_version_num')::int/100 AS version",
        "SELECT current_setting('TimeZone')",
        // The table list of the query builder (Grafana 10-12).
        "SELECT CASE WHEN quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), array_upper(string_to_array(current_setting('search_path'),','),1)) as i, string_to_array(current_setting('search_path'),',') s) THEN quote_ident(table_name) ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" FROM information_schema.tables WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental') ORDER BY 1",
        // Its column list for the chosen table.
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns WHERE quote_ident(table_name) = 'logs' ORDER BY ordinal_position",
        "SELECT typname FROM pg_catalog.pg_type WHERE typname = 'int8'",
    ];
    let results = pgx(&server.url(), &grafana);
    assert_eq!(client_rows(&results[0]), vec![vec![serde_json::json!(1.0)]]);
    let version = results[1]["rows"][0][0].as_str().unwrap();
    assert!(version.contains("DataFusion"), "{version}");
    assert_eq!(
        client_rows(&results[2]),
        vec![vec![serde_json::json!(1600.0)]]
    );
    assert_eq!(results[3]["rows"][0][0], "UTC");
    let tables = client_rows(&results[4]);
    assert!(
        tables
            .iter()
            .any(|row| row[0].as_str().unwrap().ends_with("logs")),
        "{tables:?}"
    );
    let columns: Vec<String> = client_rows(&results[5])
        .iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(columns.len(), 20, "{columns:?}");
    assert_eq!(&columns[..4], ["id", "seq", "timestamp", "level"]);
    assert_eq!(
        client_rows(&results[6]),
        vec![vec![serde_json::json!("int8")]]
    );
}

#[test]
fn bad_input_is_a_postgres_error_and_the_session_goes_on() {
    let store = store();
    let server = Server::start(store.path(), &["--memory-limit", "32M"]);
    let statements = [
        "CREATE TABLE t (a int)",
        "DROP VIEW logs",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "SET datafusion.runtime.memory_limit = '100G'",
        "SELEC 1",
        "SELECT no_such_column FROM logs",
        "SELECT count(*) FROM no_such_table",
        // array_agg cannot spill: past the memory limit it fails.
        "SELECT array_agg(concat(a.value, b.value)) FROM generate_series(1, 3000) a, generate_series(1, 3000) b",
        &format!("SELECT {}", vec!["1"; 2000].join("+")),
        "SET application_name = 'dashboards'",
        "SET TIME ZONE 'Europe/Paris'",
        "SELECT log_pattern(message) FROM logs",
        "SELECT count(*) AS n FROM logs",
    ];
    let results = pgx(&server.url(), &statements);
    let codes: Vec<&str> = results[..12]
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        codes,
        [
            "25006", "25006", "0A000", "25006", "42601", "42703", "42000", "53200", "54001", "ok",
            "0A000", "42809"
        ],
        "{results:#?}"
    );
    assert!(
        results[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("refused: query is read-only")
    );
    assert!(
        results[11]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("log_pattern() is a window function")
    );
    // The same connection still answers, and the memory limit still holds for the next.
    assert_eq!(
        client_rows(&results[12]),
        vec![vec![serde_json::json!(180.0)]]
    );
    let again = pgx(&server.url(), &[statements[7], "SELECT 2"]);
    assert_eq!(error_code(&again[0]), "53200");
    assert_eq!(client_rows(&again[1]), vec![vec![serde_json::json!(2.0)]]);

    // Wrong password, unknown user: the same FATAL; the server goes on.
    let wrong = psql(&server.conninfo_as("logs", "nope"), &["SELECT 1"]);
    let unknown = psql(&server.conninfo_as("admin", PASSWORD), &["SELECT 1"]);
    for output in [&wrong, &unknown] {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("FATAL:  Password authentication failed"),
            "{stderr}"
        );
    }
    assert!(psql(&server.conninfo(), &["SELECT 1"]).status.success());
}

#[test]
fn no_password_no_server() {
    let store = store();
    let output = Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--data")
        .arg(store.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("QUERY_SERVE_PASSWORD")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "query: query serve needs a password for user \"logs\": --password-file FILE or \
         QUERY_SERVE_PASSWORD (it never serves without authentication)\n"
    );
}

/// A self-signed certificate and key for 127.0.0.1, made with openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl: run scripts/install-test-deps");
    assert!(status.success());
    (cert, key)
}

#[test]
fn with_a_certificate_every_connection_is_tls_and_a_bad_one_stops_the_server() {
    let store = store();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = Server::start(
        store.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let encrypted = psql(
        &format!("{} sslmode=require", server.conninfo()),
        &["SELECT count(*) AS n FROM logs"],
    );
    assert!(encrypted.status.success(), "{encrypted:?}");
    assert_eq!(String::from_utf8_lossy(&encrypted.stdout), "n\n180\n");
    let plain = psql(
        &format!("{} sslmode=disable", server.conninfo()),
        &["SELECT 1"],
    );
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("this server accepts only TLS connections"),
        "{plain:?}"
    );
    let log = server.log();
    assert!(log.contains("tls=true"), "{log}");

    // A certificate that does not load is an error at start, never plaintext.
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let failed = Server::try_start(
        store.path(),
        &[
            "--tls-cert",
            garbage.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .err()
    .expect("started with a bad certificate");
    assert!(failed.contains("--tls-cert"), "{failed}");
}

#[test]
fn connections_statements_and_logins_are_bounded() {
    let store = store();
    let server = Server::start(
        store.path(),
        &["--max-connections", "2", "--statement-timeout", "2s"],
    );
    // Two sessions held open (psql reading statements from a pipe).
    let hold = || {
        let mut child = Command::new("psql")
            .args(["-X", "-q", &server.conninfo()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"SELECT 'held';\n").unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        while !line.contains("held") {
            line.clear();
            out.read_line(&mut line).unwrap();
        }
        child
    };
    let mut first = hold();
    let mut second = hold();
    let refused = psql(&server.conninfo(), &["SELECT 1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("sorry, too many clients already"),
        "{refused:?}"
    );
    drop(first.stdin.take());
    first.wait().unwrap();
    // A freed slot is taken again.
    testkit::eventually("the slot freed", Duration::from_secs(10), || {
        psql(&server.conninfo(), &["SELECT 1"]).status.success()
    });

    // A statement over its time is cancelled with 57014 at its deadline, though the join computes
    // without yielding, and the session goes on. The client times the statement itself: the
    // cancelled join keeps its compute threads until its batch is done (seconds in a debug build,
    // more under a loaded test run), which delays the session's next statements, not the
    // cancellation. So the next statement may itself reach its deadline while it waits for a
    // thread; the session is asked again, and one of the tries must answer.
    let results = pgx(
        &server.url(),
        &[
            "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
            "SELECT 3",
            "SELECT 3",
            "SELECT 3",
            "SELECT 3",
            "SELECT 3",
        ],
    );
    assert_eq!(error_code(&results[0]), "57014");
    let cancelled_after = results[0]["ms"].as_u64().unwrap();
    assert!(
        (2000..5000).contains(&cancelled_after),
        "cancelled after {cancelled_after} ms, with a 2 s statement timeout"
    );
    let waited = results[1..]
        .iter()
        .take_while(|result| result.get("error").is_some())
        .inspect(|result| assert_eq!(error_code(result), "57014", "{result}"))
        .count();
    let answered = results[1..]
        .get(waited)
        .unwrap_or_else(|| panic!("no statement answered after the cancelled one: {results:?}"));
    assert_eq!(client_rows(answered), vec![vec![serde_json::json!(3.0)]]);
    drop(second.stdin.take());
    second.wait().unwrap();

    // A connection that never logs in is closed after the login timeout.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 16];
    let read = silent.read(&mut buf);
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    // Logged as the connection is dropped (just after the client saw it close).
    testkit::eventually(
        "the silent connection logged",
        Duration::from_secs(5),
        || server.log().contains("did not log in"),
    );
}

#[test]
fn a_running_server_answers_from_the_tables_newest_version() {
    let store = store();
    let server = Server::start(store.path(), &[]);
    let count = || client_rows(&pgx(&server.url(), &["SELECT count(*) FROM logs"])[0]);
    assert_eq!(count(), vec![vec![serde_json::json!(180.0)]]);
    // The collector commits more rows while the server runs.
    let mut more = crate::fixtures::records();
    for r in &mut more {
        r.timestamp += chrono::Duration::days(7);
    }
    crate::fixtures::write_delta(store.path(), &more, 1);
    testkit::eventually(
        "the new rows served once the snapshot is older than MAX_STALENESS",
        query::table::latest_delta::MAX_STALENESS + Duration::from_secs(10),
        || count() == vec![vec![serde_json::json!(360.0)]],
    );
}

/// Grafana's macros and variables expanded as Grafana does for the range `from`..`to` (its
/// PostgreSQL data source: `$__timeFilter(c)` is `c BETWEEN 'from' AND 'to'` in RFC 3339,
/// `$__timeGroupAlias(c, i)` is `floor(extract(epoch from c)/s)*s AS "time"`), with every
/// multi-value variable on All.
pub(crate) fn expand(sql: &str, from: &str, to: &str, interval_seconds: u64) -> String {
    let mut sql = sql
        .replace("$__interval", &format!("{interval_seconds}s"))
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"))
        .replace("${cluster:csv}", "c1,c2")
        .replace("${machine:csv}", "m1,m2,m3")
        .replace("${level:csv}", "ERROR,WARN,INFO")
        .replace("$cluster", "'c1','c2'")
        .replace("$machine", "'m1','m2','m3'")
        .replace("$level", "'ERROR','WARN','INFO'");
    while let Some(start) = sql.find("$__timeFilter(") {
        let end = start + sql[start..].find(')').unwrap();
        let column = &sql[start + "$__timeFilter(".len()..end];
        sql = format!(
            "{}{column} BETWEEN '{from}' AND '{to}'{}",
            &sql[..start],
            &sql[end + 1..]
        );
    }
    while let Some(start) = sql.find("$__timeGroupAlias(") {
        let end = start + sql[start..].find(')').unwrap();
        let column = sql[start + "$__timeGroupAlias(".len()..end]
            .split(',')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        sql = format!(
            "{}floor(extract(epoch from {column})/{interval_seconds})*{interval_seconds} AS \"time\"{}",
            &sql[..start],
            &sql[end + 1..]
        );
    }
    assert!(!sql.contains('$'), "a macro or variable left: {sql}");
    sql
}

/// Every panel and variable query of `dashboards/logs.json`, expanded for a fixed range, answers
/// through pgx exactly what the CLI answers for the same SQL, and none is empty.
#[test]
fn every_logs_dashboard_panel_answers_as_the_cli() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dashboards/logs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["type"],
                "grafana-postgresql-datasource"
            );
            let title = panel["title"].as_str().unwrap().to_owned();
            queries.push((title, target["rawSql"].as_str().unwrap().to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let name = variable["name"].as_str().unwrap().to_owned();
            queries.push((name, variable["query"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(queries.len(), 8, "{queries:?}");
    let store = store();
    let server = Server::start(store.path(), &[]);
    let expanded: Vec<String> = queries
        .iter()
        .map(|(_, sql)| expand(sql, "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", 3600))
        .collect();
    let statements: Vec<&str> = expanded.iter().map(String::as_str).collect();
    let results = pgx(&server.url(), &statements);
    for (((title, _), sql), result) in queries.iter().zip(&expanded).zip(&results) {
        let rows = client_rows(result);
        assert!(!rows.is_empty(), "{title}: no rows for {sql}");
        assert_eq!(rows, cli_rows(store.path(), sql), "{title}: {sql}");
    }
    // The status panel: 3 statuses in each of the 6 hours holding rows.
    assert_eq!(client_rows(&results[0]).len(), 6 * 3);
    // Top log patterns: the warnings and errors (the store's only lines with patterns: every
    // message "request N served" is one template), 2 days x 3 hours x 3 machines x (1 warning +
    // 2 errors) lines.
    let patterns = &client_rows(&results[4]);
    assert_eq!(patterns.len(), 1, "{patterns:?}");
    assert_eq!(patterns[0][0], "request <*> served");
    assert_eq!(patterns[0][1], serde_json::json!(54.0));
}

/// A statement whose planning alone outlasts the client's statement_timeout (63 grouped union
/// branches: about 2 s to plan and run in a debug build) is cancelled at the deadline with
/// 57014: planning runs in a task of its own, inside the deadline.
#[test]
fn planning_is_held_to_the_statement_timeout() {
    let dir = store();
    let server = Server::start(dir.path(), &[]);
    let branch = "SELECT level, count(*) FROM logs WHERE machine = 'm1' GROUP BY level";
    let union = format!(
        "SELECT count(*) FROM ({})",
        vec![branch; 63].join(" UNION ALL ")
    );
    let output = psql(&server.conninfo(), &["SET statement_timeout = 100", &union]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ERROR:  canceling statement due to statement timeout"),
        "{stderr}"
    );
    // Without the client's timeout it answers.
    let output = psql(&server.conninfo(), &[&union]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "count(*)\n189\n");
}
