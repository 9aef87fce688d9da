//! `query logs`: the drill-down an alert's annotation names, and `query patterns`, its commonest
//! templates, as SQL. The time range becomes `date` predicates as well, so only that range's
//! partitions are read.

use crate::cli::{LogsArgs, PatternsArgs, Selection};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use logrecord::layout::Hour;

pub(crate) fn sql(args: &LogsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
    Ok(format!(
        // Identifiers quoted: `level` and `timestamp` are also SQL keywords.
        r#"SELECT "timestamp", "level", "cluster", "machine", "target", "message", "status", "path", "latency_us", "request_id" FROM logs WHERE {} ORDER BY "timestamp" DESC LIMIT {}"#,
        filters(&args.selection, now)?,
        args.limit
    ))
}

/// The commonest templates of the selected lines: mined in time order (an agent's `seq` breaks ties, so
/// every run mines the same order), with their share and one example each.
pub(crate) fn patterns_sql(args: &PatternsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
    Ok(format!(
        r#"SELECT count(*) AS "lines", round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS "percent", "pattern", min("message") AS "example" FROM (SELECT "message", log_pattern("message") OVER (ORDER BY "timestamp", "machine", "seq") AS "pattern" FROM logs WHERE {}) GROUP BY "pattern" ORDER BY "lines" DESC, "pattern" LIMIT {}"#,
        filters(&args.selection, now)?,
        args.limit
    ))
}

/// How many rows the drill-down matches in all, to say how many `--limit` left out.
pub(crate) fn count_sql(args: &LogsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
    Ok(format!(
        "SELECT count(*) AS n FROM logs WHERE {}",
        filters(&args.selection, now)?
    ))
}

/// The drill-down's predicates, joined by AND.
fn filters(args: &Selection, now: DateTime<Utc>) -> anyhow::Result<String> {
    for (name, value) in [
        ("--cluster", Some(&args.cluster)),
        ("--machine", args.machine.as_ref()),
    ] {
        if let Some(value) = value
            && (value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            bail!("{name} {value:?} is not a cluster or machine name");
        }
    }
    let (from, to) = range(args, now)?;
    let mut filters = vec![
        format!(r#""cluster" = '{}'"#, args.cluster),
        format!(
            r#""timestamp" >= to_timestamp_micros({})"#,
            from.timestamp_micros()
        ),
        format!(
            r#""timestamp" <= to_timestamp_micros({})"#,
            to.timestamp_micros()
        ),
        // Partition pruning: the dates the range touches.
        format!(
            "date >= '{}' AND date <= '{}'",
            Hour::of(from).date(),
            Hour::of(to).date()
        ),
    ];
    if let Some(machine) = &args.machine {
        filters.push(format!(r#""machine" = '{machine}'"#));
    }
    if let Some(level) = args.level {
        let levels: Vec<String> = logrecord::Level::ALL
            .iter()
            .filter(|l| **l >= level)
            .map(|l| format!("'{l}'"))
            .collect();
        filters.push(format!(r#""level" IN ({})"#, levels.join(", ")));
    }
    if let Some(pattern) = &args.grep {
        regex_check(pattern)?;
        filters.push(format!(
            r#"regexp_like("message", '{}')"#,
            pattern.replace('\'', "''")
        ));
    }
    Ok(filters.join(" AND "))
}

/// The time range of a drill-down: `--from`..`--to`, or the last `--since` (15 minutes).
pub(crate) fn range(
    args: &Selection,
    now: DateTime<Utc>,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let (from, to) = match (&args.from, &args.to) {
        (Some(from), Some(to)) => (parse(from)?, parse(to)?),
        _ => (
            now - chrono::Duration::from_std(
                args.since.unwrap_or(std::time::Duration::from_secs(900)),
            )?,
            now,
        ),
    };
    if from > to {
        bail!("--from is after --to");
    }
    Ok((from, to))
}

fn parse(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{text:?} is not an RFC 3339 time"))?
        .with_timezone(&Utc))
}

/// Rejects what cannot be a pattern before it reaches the engine.
fn regex_check(pattern: &str) -> anyhow::Result<()> {
    if pattern.is_empty() {
        bail!("--grep needs a pattern");
    }
    Ok(())
}
