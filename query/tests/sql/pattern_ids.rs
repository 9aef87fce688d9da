//! `query patterns` over a store whose compaction kept pattern ids: the days and hours
//! `logs_daily_by_pattern` and `logs_hourly_by_pattern` hold are read from them with the
//! dictionary's templates, the rest of
//! the range is given the dictionary's template of each line (or mined when none covers it),
//! and `pattern_id(cluster, message)` gives a line the id compaction gave it.

use crate::fixtures::{compact_and_vacuum, query, query_piped, stdout, write_delta};
use chrono::{TimeZone, Utc};
use logrecord::{Level, LogRecord, Uuid};

/// c1, machines m1 and m2, hours 00 to 04 of 2026-01-01: per machine and hour, three INFO
/// lines "job <name> done" (zeta first), a WARN "disk <n>% full" and two ERROR "upstream
/// <address> refused", five minutes apart; and one request event, which has no pattern.
fn lines() -> Vec<LogRecord> {
    let mut out = Vec::new();
    for hour in 0..5u32 {
        for (m, machine) in ["m1", "m2"].into_iter().enumerate() {
            for i in 0..7u32 {
                let timestamp = Utc
                    .with_ymd_and_hms(2026, 1, 1, hour, i * 5, 0)
                    .single()
                    .unwrap();
                let (level, message) = match i {
                    0..3 => (
                        Level::Info,
                        format!("job {} done", ["zeta", "alpha", "mid"][i as usize]),
                    ),
                    3 => (Level::Warn, format!("disk {}% full", 80 + hour)),
                    4 | 5 => (Level::Error, format!("upstream 10.0.{m}.{i} refused")),
                    _ => (Level::Info, "request".to_owned()),
                };
                let seq = u64::from(hour * 100 + i);
                let mut record = LogRecord::new(
                    seq,
                    Uuid::from_u64_pair(m as u64 + 1, seq),
                    timestamp,
                    level,
                    "imds::jobs",
                    message,
                    "c1",
                    machine,
                );
                if i == 6 {
                    record.path = Some("/metadata/instance".to_owned());
                    record.status = Some(200);
                }
                out.push(record);
            }
        }
    }
    out
}

fn patterns(root: &std::path::Path, from: &str, to: &str) -> String {
    stdout(&query(
        root,
        &[
            "patterns",
            "--cluster",
            "c1",
            "--from",
            from,
            "--to",
            to,
            "--format",
            "csv",
        ],
    ))
}

#[test]
fn query_patterns_reads_the_pattern_ids_where_the_store_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    write_delta(dir.path(), &lines(), 1);
    compact_and_vacuum(dir.path());

    // Hours 00 to 03 whole from the rollup; 04:00:00 (the range's end) from raw rows. The
    // examples are the dictionary's (each template's first line mined: "job zeta done"), not
    // the smallest line of the range, which raw rows would give ("job alpha done").
    assert_eq!(
        patterns(dir.path(), "2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z"),
        "lines,percent,pattern,example\n\
         26,52.0,job <*> done,job zeta done\n\
         16,32.0,upstream <*> refused,upstream 10.0.0.4 refused\n\
         8,16.0,disk <*> full,disk 80% full\n"
    );

    // Late lines for 04:10 of a shape no template covers: hour 04 is read raw, and those lines
    // are mined there. From 00:30: hour 00 has only its request event left, hours 01 to 03
    // from the rollup, 04 up to 04:45 raw (where the smallest example is "job alpha done").
    let late: Vec<LogRecord> = (0..3u64)
        .map(|n| {
            LogRecord::new(
                9_000 + n,
                Uuid::from_u64_pair(9, n),
                Utc.with_ymd_and_hms(2026, 1, 1, 4, 10, 0).single().unwrap(),
                Level::Error,
                "imds::replica",
                format!("replica r{n} lost its lease"),
                "c1",
                "m1",
            )
        })
        .collect();
    write_delta(dir.path(), &late, 1);
    assert_eq!(
        patterns(dir.path(), "2026-01-01T00:30:00Z", "2026-01-01T04:45:00Z"),
        "lines,percent,pattern,example\n\
         24,47.1,job <*> done,job alpha done\n\
         16,31.4,upstream <*> refused,upstream 10.0.0.4 refused\n\
         8,15.7,disk <*> full,disk 80% full\n\
         3,5.9,replica <*> lost its lease,replica r0 lost its lease\n"
    );

    // Each line's id is the one compaction counted it under.
    let by_line = stdout(&query_piped(
        dir.path(),
        "SELECT pattern_id(cluster, message) AS id, count(*) AS n FROM logs \
         WHERE hour < '04' AND (level <> 'INFO' OR path IS NULL) GROUP BY 1 ORDER BY 1;",
    ));
    let by_rollup = stdout(&query_piped(
        dir.path(),
        "SELECT pattern_id AS id, sum(\"rows\") AS n FROM logs_hourly_by_pattern \
         WHERE hour < '04' AND pattern_id IS NOT NULL GROUP BY 1 ORDER BY 1;",
    ));
    assert_eq!(by_line, by_rollup);
    assert_eq!(
        stdout(&query_piped(
            dir.path(),
            "SELECT pattern_id, template, example, lines FROM logs_patterns ORDER BY pattern_id;"
        )),
        "pattern_id,template,example,lines\n\
         1,job <*> done,job zeta done,30\n\
         2,disk <*> full,disk 80% full,10\n\
         3,upstream <*> refused,upstream 10.0.0.4 refused,20\n"
    );

    // A whole day is read from `logs_daily_by_pattern`. Compacted again (hour 04 and the day
    // rebuilt with the late lines), then hour 01 taken out of the hourly rollup: were the day
    // read from the hours, hour 01 would be read raw and give "job alpha done" as the example.
    compact_and_vacuum(dir.path());
    let warm = url::Url::from_directory_path(dir.path()).unwrap();
    testkit::run(async move {
        let hourly = warm_table::rollup::ROLLUPS
            .iter()
            .find(|r| r.name == "hourly_by_pattern")
            .unwrap();
        let table = hourly.open(&warm).await.unwrap().unwrap();
        let (_, deleted) = table.delete().with_predicate("hour = '01'").await.unwrap();
        assert_eq!(deleted.num_deleted_rows, Some(4));
    });
    assert_eq!(
        patterns(dir.path(), "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        "lines,percent,pattern,example\n\
         30,47.6,job <*> done,job zeta done\n\
         20,31.7,upstream <*> refused,upstream 10.0.0.4 refused\n\
         10,15.9,disk <*> full,disk 80% full\n\
         3,4.8,replica <*> lost its lease,replica r0 lost its lease\n"
    );

    // The dashboard's `log_patterns()` answers alike, with the last line of each template; with
    // every machine of the range listed (Grafana's "All") from the rollups, with one machine
    // from its raw lines (where the smallest example is "job alpha done").
    let table = |machines: &str| {
        stdout(&query_piped(
            dir.path(),
            &format!(
                "SELECT lines, \"percent\", \"pattern\", example, CAST(last_seen AS VARCHAR) AS last_seen \
                 FROM log_patterns('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', 'c1', '{machines}', 'ERROR,WARN,INFO');"
            ),
        ))
    };
    let every_machine = "lines,percent,pattern,example,last_seen\n\
         30,47.6,job <*> done,job zeta done,2026-01-01T04:10:00Z\n\
         20,31.7,upstream <*> refused,upstream 10.0.0.4 refused,2026-01-01T04:25:00Z\n\
         10,15.9,disk <*> full,disk 80% full,2026-01-01T04:15:00Z\n\
         3,4.8,replica <*> lost its lease,replica r0 lost its lease,2026-01-01T04:10:00Z\n";
    assert_eq!(table(""), every_machine);
    assert_eq!(table("m1,m2"), every_machine);
    assert_eq!(
        table("m2"),
        "lines,percent,pattern,example,last_seen\n\
         15,50.0,job <*> done,job alpha done,2026-01-01T04:10:00Z\n\
         10,33.3,upstream <*> refused,upstream 10.0.1.4 refused,2026-01-01T04:25:00Z\n\
         5,16.7,disk <*> full,disk 80% full,2026-01-01T04:15:00Z\n"
    );
    // Bad arguments are errors naming the argument.
    let bad = query_piped(
        dir.path(),
        "SELECT * FROM log_patterns('2026-01-01T00:00:00Z', 'soon', '', '', '');",
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("argument 2 (to) must be a time constant"),
        "{stderr}"
    );
}
