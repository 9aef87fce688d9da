//! The `query` binary over real Parquet stores: answers equal values computed from the rows
//! written, partition filters prune files before they are opened, writes are refused, bad SQL is
//! a clear error, and every output format parses back.

use crate::fixtures::{query, records, stdout};
use logrecord::{Level, LogRecord};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Writes the rows as the collector would (warm: a Delta table, one commit per `commits` share of
/// each directory's rows) or as agents' rollers would (cold: hive Parquet per machine).
fn write_store(root: &Path, warm: bool) -> Vec<LogRecord> {
    write_store_in(root, warm, 1)
}

fn write_store_in(root: &Path, warm: bool, commits: usize) -> Vec<LogRecord> {
    let records = records();
    if warm {
        crate::fixtures::write_delta(root, &records, commits);
        return records;
    }
    let mut groups: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for r in &records {
        let dir = format!(
            "date={}/hour={}",
            r.timestamp.format("%Y-%m-%d"),
            r.timestamp.format("%H")
        );
        groups
            .entry(format!("{dir}/{}.parquet", r.machine))
            .or_default()
            .push(r.clone());
    }
    for (path, mut rows) in groups {
        logrecord::parquet_file::write(&root.join(path), &mut rows).unwrap();
    }
    records
}

#[test]
fn answers_equal_the_rows_written_on_both_layouts() {
    for warm in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let records = write_store(dir.path(), warm);
        let mut expected: BTreeMap<(String, u16), usize> = BTreeMap::new();
        for r in &records {
            *expected
                .entry((r.cluster.clone(), r.status.unwrap()))
                .or_default() += 1;
        }
        let csv = stdout(&query(
            dir.path(),
            &[
                "--format",
                "csv",
                "SELECT cluster, status, count(*) AS n FROM logs GROUP BY cluster, status ORDER BY cluster, status",
            ],
        ));
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("cluster,status,n"),
            "CSV has a header row"
        );
        let got: BTreeMap<(String, u16), usize> = lines
            .map(|l| {
                let parts: Vec<&str> = l.split(',').collect();
                (
                    (parts[0].to_owned(), parts[1].parse().unwrap()),
                    parts[2].parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "warm layout: {warm}");
        let p90 = stdout(&query(
            dir.path(),
            &[
                "--format",
                "csv",
                "SELECT approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_us) AS p90 FROM logs WHERE cluster = 'c2'",
            ],
        ));
        let p90: f64 = p90.lines().nth(1).unwrap().parse().unwrap();
        assert!(
            (58.0..=59.0).contains(&p90),
            "latencies 50..59 evenly: p90 {p90}"
        );
    }
}

/// The files keep ids as 16 bytes; SQL sees, prints and compares the text of the log line.
#[test]
fn ids_read_print_and_filter_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_store(dir.path(), false);
    let one = &records[17];
    let (id, request_id) = (one.id.to_string(), one.request_id.unwrap().to_string());
    let csv = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            &format!(
                "SELECT id, request_id, machine, arrow_typeof(id) AS t FROM logs WHERE id = '{id}'"
            ),
        ],
    ));
    assert_eq!(
        csv,
        format!(
            "id,request_id,machine,t\n{id},{request_id},{},Utf8\n",
            one.machine
        )
    );
    let same_request = records
        .iter()
        .filter(|r| r.request_id == one.request_id)
        .count();
    let count = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            &format!("SELECT count(*) AS n FROM logs WHERE request_id = '{request_id}'"),
        ],
    ));
    assert_eq!(count, format!("n\n{same_request}\n"));
    let json = stdout(&query(
        dir.path(),
        &[
            "--format",
            "json",
            &format!("SELECT * FROM logs WHERE id = '{id}'"),
        ],
    ));
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (row["id"].as_str(), row["request_id"].as_str()),
        (Some(id.as_str()), Some(request_id.as_str()))
    );
    assert_eq!(row["seq"], one.seq);
}

#[test]
fn partition_filters_skip_files_before_any_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), true);
    // Every data file of the table but those of one partition damaged: opening any of them fails
    // the query. Files come from the table's log (no listing), skipped by partition values.
    for file in testkit::files_under(dir.path()) {
        let text = file.to_string_lossy();
        if text.ends_with(".parquet")
            && !text.contains("_delta_log")
            && !text.contains("date=2026-01-02/hour=01/cluster=c1")
        {
            std::fs::write(&file, b"not parquet at all, but as long as a footer").unwrap();
        }
    }
    let one = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n, min(machine) AS lo, max(machine) AS hi FROM logs WHERE date = '2026-01-02' AND hour = '01' AND cluster = 'c1'",
        ],
    ));
    assert_eq!(one.lines().nth(1), Some("20,m1,m2"));
    let machine = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM logs WHERE date = '2026-01-02' AND hour = '01' AND cluster = 'c1' AND machine = 'm2'",
        ],
    ));
    assert_eq!(machine.lines().nth(1), Some("10"));
    // (A plain count(*) is answered from the log's row counts without opening a file.)
    let everything = query(dir.path(), &["SELECT sum(latency_us) FROM logs"]);
    assert!(
        !everything.status.success(),
        "without the filters the damaged files are read, so skipping is what kept them out"
    );
    let stderr = String::from_utf8_lossy(&everything.stderr);
    assert!(
        stderr.contains("the file is damaged or not Parquet"),
        "{stderr}"
    );
}

#[test]
fn writes_are_refused_and_bad_sql_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), true);
    for statement in [
        "CREATE TABLE x AS SELECT 1",
        "DROP TABLE logs",
        "INSERT INTO logs SELECT * FROM logs",
        &format!("COPY (SELECT 1) TO '{}/out.csv'", dir.path().display()),
        "SET datafusion.execution.batch_size = 1",
    ] {
        let output = query(dir.path(), &[statement]);
        assert_eq!(output.status.code(), Some(1), "{statement}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("read-only"), "{statement}: {stderr}");
    }
    assert!(!dir.path().join("out.csv").exists());
    let bad = query(dir.path(), &["SELEC count(*) FROM logs"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SQL error"));
    let unknown = query(dir.path(), &["SELECT nope FROM logs"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
    let missing = Command::new(env!("CARGO_BIN_EXE_query"))
        .args(["--data", "/nonexistent", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent: no such directory"));
    let empty = tempfile::tempdir().unwrap();
    let nothing = query(empty.path(), &["SELECT 1"]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no date=YYYY-MM-DD partitions"));
    for (source, token, message) in [
        ("ftp://host/x", "", "unsupported source scheme ftp://"),
        ("https://host:1", "", "need the admin API's logs token"),
        ("http://127.0.0.1:1", "", "need the admin API's logs token"),
        (
            "https://127.0.0.1:1",
            "a-token-of-16-chars",
            "need --ca-file",
        ),
    ] {
        let refused = Command::new(env!("CARGO_BIN_EXE_query"))
            .args(["--data", source, "SELECT 1"])
            .env("QUERY_TOKEN", token)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{source}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(message), "{source}: {stderr}");
    }
}

/// Without a statement and with stdin not a terminal: the `;`-separated statements of stdin run
/// in turn; one failing prints its error, the others still run, and the exit status says so.
#[test]
fn statements_piped_on_stdin_run_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_store(dir.path(), true);
    let output = crate::fixtures::query_piped(
        dir.path(),
        "SELECT count(*) AS n FROM logs;\nSELECT nope FROM logs;\nSELECT count(*) AS errors\n  FROM logs WHERE level = 'ERROR';\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let errors = records.iter().filter(|r| r.level == Level::Error).count();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("n\n{}\nerrors\n{errors}\n", records.len())
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope"));
}

/// With a terminal: the interactive prompt (driven through `script`, which gives it a pty) runs
/// statements typed over several lines and keeps them in its history file.
#[test]
fn the_prompt_runs_statements_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_store(dir.path(), true);
    let history = dir.path().join("history");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} --data {}",
            env!("CARGO_BIN_EXE_query"),
            dir.path().display()
        ))
        .arg("/dev/null")
        .env("QUERY_HISTORY", &history)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs the prompt in a pty");
    use std::io::Write as _;
    let mut stdin = child.stdin.take().unwrap();
    for line in ["SELECT count(*) AS total_rows", "FROM logs;", "\\q"] {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("total_rows"), "{screen}");
    assert!(
        screen.contains(&format!("| {} ", records.len())),
        "{screen}"
    );
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("SELECT count(*) AS total_rows"), "{saved}");
}

#[test]
fn every_output_format_parses_back_with_rfc3339_utc_times() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), true);
    let sql = "SELECT timestamp, machine, status FROM logs WHERE cluster = 'c2' AND date = '2026-01-01' AND hour = '00' ORDER BY timestamp LIMIT 3";
    let json = stdout(&query(dir.path(), &["--format", "json", sql]));
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["machine"], "m3");
    assert_eq!(
        rows[1]["timestamp"].as_str().unwrap()[..19],
        *"2026-01-01T00:05:00"
    );
    assert!(
        rows[1]["timestamp"].as_str().unwrap().ends_with('Z')
            || rows[1]["timestamp"].as_str().unwrap().ends_with("+00:00")
    );
    let table = stdout(&query(dir.path(), &[sql]));
    assert!(
        table.contains("| timestamp") && table.contains("2026-01-01T00:05:00"),
        "{table}"
    );
    let csv = stdout(&query(dir.path(), &["--format", "csv", sql]));
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("2026-01-01T00:00:00"),
        "{csv}"
    );
    let out = dir.path().join("result.parquet");
    stdout(&query(
        dir.path(),
        &[
            "--format",
            "parquet",
            "--output",
            out.to_str().unwrap(),
            sql,
        ],
    ));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 3);
}

#[test]
fn the_logs_drilldown_shows_a_clusters_warnings_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_store(dir.path(), true);
    // c1's warnings and errors of 2026-01-02, 00:00-01:59, with `extra` flags.
    let drilldown = |extra: &[&str]| {
        let mut args = vec![
            "logs",
            "--cluster",
            "c1",
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-02T01:59:59Z",
            "--level",
            "warn",
        ];
        args.extend_from_slice(extra);
        query(dir.path(), &args)
    };
    let out = stdout(&drilldown(&["--format", "json"]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<&LogRecord> = records
        .iter()
        .filter(|r| {
            r.cluster == "c1"
                && r.level >= Level::Warn
                && r.timestamp.format("%Y-%m-%d %H").to_string().as_str() >= "2026-01-02 00"
                && r.timestamp.format("%Y-%m-%d %H").to_string().as_str() <= "2026-01-02 01"
        })
        .collect();
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows.iter()
            .all(|r| r["cluster"] == "c1" && (r["level"] == "WARN" || r["level"] == "ERROR"))
    );
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Stopped at its --limit, it says how many rows it left out; within it, nothing.
    let limited = drilldown(&["--limit", "3", "--format", "csv"]);
    assert_eq!(stdout(&limited).lines().count(), 1 + 3);
    assert_eq!(
        String::from_utf8_lossy(&limited.stderr),
        format!(
            "query logs: showed the newest 3 of {} rows ({} left out): narrow with --since, \
             --level or --grep, or raise --limit\n",
            expected.len(),
            expected.len() - 3
        )
    );
    let all = drilldown(&["--format", "csv"]);
    assert_eq!(stdout(&all).lines().count(), 1 + expected.len());
    assert_eq!(String::from_utf8_lossy(&all.stderr), "");

    let bad = query(
        dir.path(),
        &["logs", "--cluster", "c1'; DROP TABLE logs; --"],
    );
    assert_eq!(bad.status.code(), Some(1));
}

/// Every step a Delta store goes through (appends, files of killed writers, compaction, vacuum)
/// leaves each row visible once, whole-table and partition-skipped alike; a damaged log is an
/// error, never a silent wrong count.
#[test]
fn a_delta_store_shows_each_row_once_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_store_in(dir.path(), true, 3);
    let partition = dir.path().join("date=2026-01-01/hour=00/cluster=c1");
    let in_partition = records
        .iter()
        .filter(|r| r.cluster == "c1" && r.timestamp.format("%d%H").to_string() == "0100")
        .count();
    let counts = || {
        let whole = stdout(&query(
            dir.path(),
            &[
                "--format",
                "csv",
                "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM logs",
            ],
        ));
        let pruned = stdout(&query(
            dir.path(),
            &[
                "--format",
                "csv",
                "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM logs WHERE date = '2026-01-01' AND hour = '00' AND cluster = 'c1'",
            ],
        ));
        (
            whole.lines().nth(1).unwrap().to_owned(),
            pruned.lines().nth(1).unwrap().to_owned(),
        )
    };
    let expected = (
        format!("{0},{0}", records.len()),
        format!("{0},{0}", in_partition),
    );
    assert_eq!(counts(), expected);
    assert_eq!(testkit::parquet_files(&partition), 3);

    // A file a killed flush or compaction left, written but never committed: not data.
    logrecord::parquet_file::write(
        &partition.join("part-00000-killed.parquet"),
        &mut records[..5].to_vec(),
    )
    .unwrap();
    std::fs::write(partition.join(".part-partial.parquet"), b"partial").unwrap();
    assert_eq!(counts(), expected);
    // Compaction (one commit that swaps the files) and vacuum (the replaced and stray go).
    crate::fixtures::compact_and_vacuum(dir.path());
    assert_eq!(counts(), expected);
    assert_eq!(testkit::parquet_files(&partition), 1);
    // Compaction also rolled every closed hour up, and `query` shows the rollups as tables:
    // they answer what the raw rows answer.
    let csv = |sql: &str| stdout(&query(dir.path(), &["--format", "csv", sql]));
    let by_status = csv(
        "SELECT cluster, status, sum(rows) AS n, sum(latency_us_sum) AS latency FROM logs_hourly_by_status GROUP BY 1, 2 ORDER BY 1, 2",
    );
    assert_eq!(
        by_status,
        csv(
            "SELECT cluster, status, count(*) AS n, sum(latency_us) AS latency FROM logs GROUP BY 1, 2 ORDER BY 1, 2"
        )
    );
    assert_eq!(by_status.lines().count(), 1 + 2 * 3, "{by_status}");

    // A damaged log entry is an error, never a silent wrong count.
    let log = dir.path().join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    std::fs::write(commits.last().unwrap(), b"{not json").unwrap();
    let output = query(dir.path(), &["SELECT count(*) FROM logs"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Delta table"), "{stderr}");
}

/// `query patterns`: a cluster's lines grouped by template, commonest first, with their share
/// and one example; `log_pattern()` needs `OVER`, and says so.
#[test]
fn the_patterns_drilldown_groups_a_clusters_lines_by_template() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = records();
    for r in &mut records {
        let i = r.seq % 100;
        // Log lines, not request events (those have no template: counted by path and status).
        r.path = None;
        r.message = match i {
            0..4 => format!("request {i} served"),
            4..7 => format!("upstream fetch from 10.0.{i}.1:80 failed"),
            _ => format!(
                "metadata document {} loaded",
                ["alpha", "beta", "gamma"][i as usize - 7]
            ),
        };
    }
    crate::fixtures::write_delta(dir.path(), &records, 1);
    let patterns = |extra: &[&str]| {
        let mut args = vec![
            "patterns",
            "--cluster",
            "c1",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-01T23:59:59Z",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        stdout(&query(dir.path(), &args))
    };
    // c1 on 2026-01-01: 2 machines x 3 hours x 10 lines, 4 + 3 + 3 of each ten.
    assert_eq!(
        patterns(&[]),
        "lines,percent,pattern,example\n\
         24,40.0,request <*> served,request 0 served\n\
         18,30.0,metadata document <*> loaded,metadata document alpha loaded\n\
         18,30.0,upstream fetch from <*> failed,upstream fetch from 10.0.4.1:80 failed\n"
    );
    assert_eq!(
        patterns(&["--machine", "m2", "--limit", "1"]),
        "lines,percent,pattern,example\n12,40.0,request <*> served,request 0 served\n"
    );
    assert_eq!(
        patterns(&["--grep", "upstream"]),
        "lines,percent,pattern,example\n\
         18,100.0,upstream fetch from <*> failed,upstream fetch from 10.0.4.1:80 failed\n"
    );

    // The SQL function, per cluster: c2's lines are mined apart from c1's.
    let per_cluster = stdout(&query(
        dir.path(),
        &[
            "--format",
            "csv",
            r#"SELECT cluster, pattern, count(*) AS n FROM (SELECT cluster, log_pattern(message) OVER (PARTITION BY cluster ORDER BY "timestamp", machine, seq) AS pattern FROM logs) GROUP BY 1, 2 ORDER BY 1, 2"#,
        ],
    ));
    assert_eq!(
        per_cluster,
        "cluster,pattern,n\n\
         c1,metadata document <*> loaded,36\n\
         c1,request <*> served,48\n\
         c1,upstream fetch from <*> failed,36\n\
         c2,metadata document <*> loaded,18\n\
         c2,request <*> served,24\n\
         c2,upstream fetch from <*> failed,18\n"
    );
    let without_over = query(dir.path(), &["SELECT log_pattern(message) FROM logs"]);
    assert_eq!(without_over.status.code(), Some(1));
    let message = String::from_utf8_lossy(&without_over.stderr);
    assert!(message.contains("OVER"), "{message}");
}
