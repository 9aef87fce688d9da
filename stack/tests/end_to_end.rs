//! The whole native stack, end to end (`scripts/stack`): Kafka, the collector, three agents in
//! two clusters, traffic, Prometheus with the alert rules, Alertmanager, the blackbox dial-tone.
//!
//! Proves: every dashboard panel expression returns data from the live Prometheus; a latency
//! fault injected on one agent fires its cluster's p90 alert within 30 s, routed to that
//! cluster's receiver, and the alert resolves once the fault is cleared; stopping an agent fires
//! its dial-tone alert within 30 s; each alert's annotation command, run as written, brings up
//! that cluster's or machine's recent logs from the warm store; `down` leaves no process behind.
//!
//! Uses the debug binaries `cargo test --workspace` builds (agent, collector, query, traffic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "http://127.0.0.1:19090";
const ALERTMANAGER: &str = "http://127.0.0.1:19095";
const BLACKBOX: &str = "http://127.0.0.1:19115";
/// Every port the stack listens on (see scripts/stack and deploy/targets/native).
const PORTS: &[u16] = &[
    19193, 19194, 19195, 19465, 18081, 18082, 18083, 19461, 19462, 19463, 19471, 19472, 19473,
    19090, 19095, 19115, 15433, 15050, 15051, 15052, 15053, 15054,
];
/// How fast a fault must be firing (the issue's bound; the rule timings aim well under it).
const FIRING_WITHIN: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_traffic"))
        .parent()
        .unwrap()
        .into()
}

/// The running stack; `down` on drop, so a failed assertion leaves nothing running.
struct Stack {
    dir: tempfile::TempDir,
    down: bool,
}

impl Stack {
    fn up() -> Stack {
        for binary in [
            "agent",
            "collector",
            "query",
            "query-scheduler",
            "query-executor",
            "traffic",
        ] {
            assert!(
                bin_dir().join(binary).exists(),
                "{binary} is not built in {}: run the suite with `cargo test --workspace` (scripts/test), which builds every binary",
                bin_dir().display()
            );
        }
        let busy: Vec<_> = PORTS.iter().filter(|port| listening(**port)).collect();
        assert!(
            busy.is_empty(),
            "ports {busy:?} are in use: is a stack already running? (`scripts/stack down`)"
        );
        let stack = Stack {
            dir: tempfile::tempdir().unwrap(),
            down: false,
        };
        let output = stack.script(&["up"]);
        assert!(output.status.success(), "scripts/stack up failed");
        stack
    }

    fn script(&self, args: &[&str]) -> Output {
        let output = Command::new(root().join("scripts/stack"))
            .args(args)
            .env("STACK_DIR", self.dir.path())
            .env("STACK_BIN_DIR", bin_dir())
            .output()
            .unwrap();
        eprintln!(
            "scripts/stack {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The token of the agents' fault switch.
    fn fault_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin-fault-token")).unwrap()
    }

    /// Pids of every process the stack started, Kafka's included.
    fn pids(&self) -> Vec<u32> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("pids"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.push(self.dir.path().join("kafka/kafka.pid"));
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|text| text.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    }

    /// Runs an alert's `logs` annotation as written, in a shell that sourced the stack's env
    /// file (as `scripts/stack status` tells users to): `query` on PATH, reading the warm store.
    fn run_annotation(&self, command: &str) -> String {
        assert!(
            command.starts_with("query "),
            "annotation is not a query command: {command}"
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}/env' && {command}",
                self.dir.path().display()
            ))
            .env_remove("QUERY_DATA")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// psql against the stack's `query serve`, with the password `scripts/stack password` prints.
    fn psql(&self, sql: &str) -> String {
        let password = self.script(&["password"]);
        assert!(password.status.success());
        let output = Command::new("psql")
            .args([
                "--csv",
                "-X",
                "host=127.0.0.1 port=15433 user=logs dbname=logs",
                "-c",
                sql,
            ])
            .env(
                "PGPASSWORD",
                String::from_utf8(password.stdout).unwrap().trim(),
            )
            .output()
            .expect("psql: run scripts/install-test-deps");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn down(mut self) -> Vec<u32> {
        let pids = self.pids();
        let output = self.script(&["down"]);
        assert!(output.status.success());
        self.down = true;
        pids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.down {
            self.script(&["down"]);
        }
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An instant query's result vector.
fn prometheus_query(expr: &str) -> Vec<Value> {
    let response: Value = http()
        .get(format!("{PROMETHEUS}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["status"], "success", "{expr}: {response}");
    response["data"]["result"].as_array().unwrap().clone()
}

/// Prometheus's active alerts (pending or firing).
fn alerts() -> Vec<Value> {
    let response: Value = http()
        .get(format!("{PROMETHEUS}/api/v1/alerts"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    response["data"]["alerts"].as_array().unwrap().clone()
}

fn firing(name: &str, label: &str, value: &str) -> Option<Value> {
    alerts().into_iter().find(|a| {
        a["labels"]["alertname"] == name && a["labels"][label] == value && a["state"] == "firing"
    })
}

fn set_fault(admin_port: u16, token: &str, body: Option<&str>) {
    let url = format!("http://127.0.0.1:{admin_port}/fault");
    let request = match body {
        Some(body) => http().put(url).body(body.to_owned()),
        None => http().delete(url),
    };
    let response = request.bearer_auth(token.trim()).send().unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
}

/// What the dashboards ask Prometheus.
struct DashboardQueries {
    /// (panel, PromQL expression) of every panel target.
    exprs: Vec<(String, String)>,
    /// (series selector, label) of every `label_values(selector, label)` template variable.
    variables: Vec<(String, String)>,
}

/// Every PromQL expression of every panel of `dashboards/*.json`, with its panel title, and the
/// `label_values(metric, label)` queries of the template variables.
fn dashboard_queries() -> DashboardQueries {
    let mut exprs = Vec::new();
    let mut variables = Vec::new();
    for name in ["imds.json", "pipeline.json"] {
        let text = std::fs::read_to_string(root().join("dashboards").join(name)).unwrap();
        let board: Value = serde_json::from_str(&text).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: panel {} does not use the datasource variable",
                panel["title"]
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{name}: {} has no query",
                panel["title"]
            );
            for target in targets {
                exprs.push((
                    format!("{name}: {}", panel["title"].as_str().unwrap()),
                    target["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
        for variable in board["templating"]["list"].as_array().unwrap() {
            if variable["type"] == "query" {
                let query = variable["query"]["query"].as_str().unwrap();
                let inner = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.strip_suffix(')'))
                    .unwrap();
                let (selector, label) = inner.rsplit_once(',').unwrap();
                variables.push((selector.trim().to_owned(), label.trim().to_owned()));
            }
        }
    }
    DashboardQueries { exprs, variables }
}

/// The rows of `query`'s table output, as column -> value.
fn table_rows(table: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let mut lines = table.lines().filter(|l| l.starts_with('|'));
    let header = cells(lines.next().expect("no table header"));
    let rows: Vec<_> = lines
        .map(|line| header.iter().cloned().zip(cells(line)).collect())
        .collect();
    assert!(!rows.is_empty(), "no rows in:\n{table}");
    rows
}

/// What Grafana would send with "All" selected.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$cluster", ".*")
        .replace("$machine", ".*")
        .replace("$__rate_interval", "30s")
}

#[test]
fn the_stack_alerts_on_faults_and_its_annotations_bring_up_the_logs() {
    let stack = Stack::up();
    let token = stack.fault_token();

    // Up: every target scraped, traffic counted for every machine, the collector writing.
    testkit::eventually("every scrape target up", Duration::from_secs(60), || {
        let up = prometheus_query("up == 1");
        (up.len() == 7).then_some(())
    });
    testkit::eventually(
        "requests from every machine and rows in the warm store",
        Duration::from_secs(60),
        || {
            let machines = prometheus_query("sum by (machine) (imds_requests_total) > 0");
            let rows = prometheus_query("sum(collector_written_rows_total) > 0");
            (machines.len() == 3 && rows.len() == 1).then_some(())
        },
    );

    // The dial-tone module accepts the instance document only: not another JSON body, not text.
    for (target, expected) in [
        (
            "127.0.0.1:18081/metadata/instance?api-version=2021-02-01",
            "1",
        ),
        ("127.0.0.1:18081/metadata/versions", "0"),
        (
            "127.0.0.1:18081/metadata/instance/compute/location?api-version=2021-02-01&format=text",
            "0",
        ),
    ] {
        let page = http()
            .get(format!("{BLACKBOX}/probe"))
            .query(&[
                ("module", "imds_dialtone"),
                ("target", &format!("http://{target}")),
            ])
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            page.lines()
                .any(|l| l == format!("probe_success {expected}")),
            "{target}: {page}"
        );
    }

    // Every panel expression and template variable returns data (rates need a few scrapes).
    let DashboardQueries { exprs, variables } = dashboard_queries();
    assert!(exprs.len() >= 25, "only {} panel queries", exprs.len());
    for (panel, expr) in &exprs {
        let sent = as_grafana_sends(expr);
        testkit::eventually(
            &format!("data for {panel}: {sent}"),
            Duration::from_secs(60),
            || (!prometheus_query(&sent).is_empty()).then_some(()),
        );
    }
    for (selector, label) in &variables {
        let selector = as_grafana_sends(selector);
        let values: Value = http()
            .get(format!("{PROMETHEUS}/api/v1/label/{label}/values"))
            .query(&[("match[]", selector.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            !values["data"].as_array().unwrap().is_empty(),
            "variable {label} from {selector}: {values}"
        );
    }
    assert!(
        alerts().is_empty(),
        "alerts before any fault: {:?}",
        alerts()
    );

    // A latency fault on east-1 fires east's p90 alert within 30 s, and only east's.
    set_fault(19471, &token, Some(r#"{"latency_ms": 300}"#));
    let injected = Instant::now();
    let alert = testkit::eventually("IMDSLatencyP90High for east", FIRING_WITHIN, || {
        firing("IMDSLatencyP90High", "cluster", "east")
    });
    eprintln!(
        "latency alert firing {:?} after the fault",
        injected.elapsed()
    );
    assert!(firing("IMDSLatencyP90High", "cluster", "west").is_none());
    let annotation = alert["annotations"]["logs"].as_str().unwrap();
    assert_eq!(annotation, "query logs --cluster east --since 15m");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("p90 latency of the metadata API in cluster east is ")
    );

    // Alertmanager has it, routed to east's receiver.
    testkit::eventually(
        "the latency alert in Alertmanager, routed to east-oncall",
        Duration::from_secs(30),
        || {
            let routed: Value = http()
                .get(format!("{ALERTMANAGER}/api/v2/alerts"))
                .query(&[("filter", "alertname=\"IMDSLatencyP90High\"")])
                .send()
                .unwrap()
                .json()
                .unwrap();
            routed
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["labels"]["cluster"] == "east")
                .map(|a| assert_eq!(a["receivers"][0]["name"], "east-oncall", "{a}"))
        },
    );

    // The annotation's command brings up east's recent logs: both machines, nothing from west,
    // and east-1's slow requests among them.
    let logs = stack.run_annotation(annotation);
    let rows = table_rows(&logs);
    let machines: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["machine"].as_str()).collect();
    assert_eq!(machines, ["east-1", "east-2"].into(), "{logs}");
    assert!(
        rows.iter().any(|r| r["machine"] == "east-1"
            && r["latency_us"].parse::<u64>().is_ok_and(|us| us >= 300_000)),
        "no slow request of east-1 in:\n{logs}"
    );
    // The same logs over the PostgreSQL protocol (what Grafana's logs dashboard reads).
    let served = stack.psql(
        "SELECT machine, count(*) AS n FROM logs WHERE cluster = 'east' AND latency_us >= 300000 GROUP BY machine ORDER BY machine",
    );
    assert!(served.starts_with("machine,n\neast-1,"), "{served}");
    // And on the stack's Ballista cluster, the same as in-process over the events emitted up
    // to 5 s ago. Both read the table's newest version, and a late commit can add events
    // before the cut-off between the two reads: they are compared until a pair agrees (the
    // agents ship within a second and the collector commits every 2 s, so one soon does).
    // (The stack may have been up for less than half a minute here: a cut-off further back
    // can hold no event at all.)
    let before = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let sql = format!(
        "SELECT cluster, machine, count(*) AS n FROM logs WHERE \"timestamp\" < TIMESTAMP '{before}' GROUP BY cluster, machine ORDER BY cluster, machine"
    );
    let here = testkit::eventually(
        "the same counts in-process and on the cluster",
        Duration::from_secs(120),
        || {
            let here = stack.run_annotation(&format!(
                "query --format csv \"{}\"",
                sql.replace('"', "\\\"")
            ));
            let there = stack.run_annotation(&format!(
                "query --cluster df://127.0.0.1:15050 --format csv \"{}\"",
                sql.replace('"', "\\\"")
            ));
            (there == here).then_some(here)
        },
    );
    assert!(
        here.starts_with("cluster,machine,n\neast,east-1,"),
        "{here}"
    );

    // Cleared: the alert resolves.
    set_fault(19471, &token, None);
    testkit::eventually(
        "IMDSLatencyP90High for east to resolve",
        Duration::from_secs(120),
        || {
            alerts()
                .iter()
                .all(|a| a["labels"]["alertname"] != "IMDSLatencyP90High")
                .then_some(())
        },
    );

    // Stopping east-2 fires its dial-tone alert within 30 s.
    let output = stack.script(&["stop", "agent-east-2"]);
    assert!(output.status.success());
    let stopped = Instant::now();
    let alert = testkit::eventually("IMDSDialToneFailing for east-2", FIRING_WITHIN, || {
        firing("IMDSDialToneFailing", "machine", "east-2")
    });
    eprintln!(
        "dial-tone alert firing {:?} after the stop",
        stopped.elapsed()
    );
    assert_eq!(alert["labels"]["cluster"], "east");
    assert!(firing("IMDSDialToneFailing", "machine", "east-1").is_none());
    let annotation = alert["annotations"]["logs"].as_str().unwrap();
    assert_eq!(
        annotation,
        "query logs --cluster east --machine east-2 --since 15m"
    );
    assert_eq!(
        alert["annotations"]["dashboard"],
        "http://127.0.0.1:3000/d/imds-logs/imds-stored-logs?var-cluster=east&var-machine=east-2&from=now-15m&to=now"
    );
    // That machine's logs, newest first, up to the last events it shipped on the way out: its
    // "shutting down", after which only the requests in flight at that moment finish and log
    // (the final "agent stopped" is written after the shipper stops: it is in the host's cold
    // path).
    let logs = stack.run_annotation(annotation);
    let rows = table_rows(&logs);
    assert!(rows.iter().all(|r| r["machine"] == "east-2"), "{logs}");
    let shutdown = rows
        .iter()
        .position(|r| r["message"] == "shutting down")
        .unwrap_or_else(|| panic!("no \"shutting down\" event: {logs}"));
    assert!(
        shutdown <= 5
            && rows[..shutdown]
                .iter()
                .all(|r| r["message"] == "request served"),
        "only in-flight requests may log after \"shutting down\": {logs}"
    );

    // Down: every process the stack started is gone, every port closed.
    let pids = stack.down();
    // Kafka, the collector, query serve, the scheduler and two executors, traffic, Prometheus,
    // Alertmanager, blackbox, two agents (east-2 stopped).
    assert_eq!(pids.len(), 12, "pids: {pids:?}");
    let alive: Vec<_> = pids
        .iter()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(alive.is_empty(), "still running after down: {alive:?}");
    let open: Vec<_> = PORTS.iter().filter(|port| listening(**port)).collect();
    assert!(open.is_empty(), "still listening after down: {open:?}");
}
