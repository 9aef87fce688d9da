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

/// The lines that have templates: warnings, errors and INFO lines that are not request events
/// (those are counted by status, path and api-version; all of them would be one template).
pub(crate) const HAS_PATTERN: &str =
    r#"("level" IN ('WARN', 'ERROR') OR ("level" = 'INFO' AND "path" IS NULL))"#;

/// The commonest templates of the selected lines: mined in time order (an agent's `seq` breaks ties, so
/// every run mines the same order), with their share and one example each.
pub(crate) fn patterns_sql(args: &PatternsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
    Ok(format!(
        r#"SELECT count(*) AS "lines", round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS "percent", "pattern", min("message") AS "example" FROM (SELECT "message", log_pattern("message") OVER (ORDER BY "timestamp", "machine", "seq") AS "pattern" FROM logs WHERE {} AND {HAS_PATTERN}) GROUP BY "pattern" ORDER BY "lines" DESC, "pattern" LIMIT {}"#,
        filters(&args.selection, now)?,
        args.limit
    ))
}

/// `patterns_sql` answered from the pattern ids (see [`FromIds`]).
pub(crate) fn patterns_sql_from_ids(
    args: &PatternsArgs,
    now: DateTime<Utc>,
    held: &crate::pattern_ids::Held,
) -> anyhow::Result<String> {
    let selection = &args.selection;
    let levels = selection.level.map(|level| {
        logrecord::Level::ALL
            .iter()
            .filter(|l| **l >= level)
            .map(ToString::to_string)
            .collect()
    });
    Ok(FromIds {
        clusters: std::slice::from_ref(&selection.cluster),
        levels,
        // The rollups have no machine and no message text: with either filter, every line is
        // read.
        read_raw: selection.machine.is_some() || selection.grep.is_some(),
        raw_filters: filters(selection, now)?,
        held,
        limit: args.limit,
        last_seen: false,
    }
    .sql())
}

/// The commonest templates of lines answered from the pattern ids (`pattern_ids.rs`): the
/// `held` days' and hours' counts per id from `logs_daily_by_pattern` and
/// `logs_hourly_by_pattern` with the dictionary's templates, and the other lines of the range
/// (its edges, the open hour, periods not built yet) given the dictionary's template that
/// covers them, or mined when none does. Columns: `lines`, `percent`, `pattern`, `example`
/// (the dictionary's, or the smallest raw line), and `last_seen` if asked.
pub(crate) struct FromIds<'a> {
    /// The clusters the lines are of.
    pub(crate) clusters: &'a [String],
    /// The levels they are of; `None` for all.
    pub(crate) levels: Option<Vec<String>>,
    /// Whether every line is read raw (a filter the rollups cannot apply).
    pub(crate) read_raw: bool,
    /// The raw lines' conditions (the clusters, the range, levels and any other).
    pub(crate) raw_filters: String,
    pub(crate) held: &'a crate::pattern_ids::Held,
    pub(crate) limit: usize,
    pub(crate) last_seen: bool,
}

impl FromIds<'_> {
    pub(crate) fn sql(&self) -> String {
        let in_ranges = |column: &str, ranges: &[(DateTime<Utc>, DateTime<Utc>)]| {
            let ranges: Vec<String> = ranges
                .iter()
                .map(|(from, to)| {
                    format!(
                        "({column} >= to_timestamp_micros({}) AND {column} < to_timestamp_micros({}))",
                        from.timestamp_micros(),
                        to.timestamp_micros()
                    )
                })
                .collect();
            if ranges.is_empty() {
                "false".to_owned()
            } else {
                format!("({})", ranges.join(" OR "))
            }
        };
        let levels = match &self.levels {
            Some(levels) => format!(r#" AND CAST("level" AS VARCHAR) IN ({})"#, quoted(levels)),
            None => String::new(),
        };
        let table = crate::pattern_ids::DICTIONARY_TABLE;
        let prefix = crate::table::ROLLUP_TABLE_PREFIX;
        let mut counted = Vec::new();
        let mut covered = Vec::new();
        let periods = [
            (
                &self.held.days,
                "day_start",
                warm_table::rollup::patterns::DAILY_BY_PATTERN,
                24,
            ),
            (
                &self.held.hours,
                "hour_start",
                warm_table::rollup::patterns::BY_PATTERN,
                1,
            ),
        ];
        for (starts, start, rollup, hours) in periods {
            if self.read_raw || starts.is_empty() || self.clusters.is_empty() {
                continue;
            }
            let ranges = crate::rollups::ranges(starts, chrono::Duration::hours(hours));
            counted.push(format!(
                r#"SELECT CAST("cluster" AS VARCHAR) AS "cluster", "pattern_id", "rows", "last_seen" FROM {prefix}{rollup} WHERE CAST("cluster" AS VARCHAR) IN ({clusters}) AND {in_periods}{levels}"#,
                clusters = quoted(self.clusters),
                in_periods = in_ranges(&format!(r#""{start}""#), &ranges),
            ));
            covered.extend(ranges);
        }
        covered.sort();
        let mut parts = Vec::new();
        if !counted.is_empty() {
            parts.push(format!(
                r#"SELECT h."rows" AS "lines", d."template" AS "pattern", d."example" AS "example", h."last_seen" AS "last_seen" FROM ({}) h JOIN {table} d ON h."cluster" = CAST(d."cluster" AS VARCHAR) AND h."pattern_id" = d."pattern_id""#,
                counted.join(" UNION ALL ")
            ));
        }
        // The raw lines, unless the rollups hold every line of the range: a scan plans over
        // every file of the table even to read nothing.
        if self.read_raw || counted.is_empty() || self.held.rows_outside {
            parts.push(format!(
                r#"SELECT 1 AS "lines", coalesce(d."template", log_pattern(l."message") OVER (PARTITION BY d."template" IS NULL ORDER BY l."timestamp", l."machine", l."seq")) AS "pattern", l."message" AS "example", l."timestamp" AS "last_seen" FROM (SELECT "timestamp", "machine", "seq", "message", CAST("cluster" AS VARCHAR) AS "cluster", pattern_id("cluster", "message") AS "pid" FROM logs WHERE {filters} AND {HAS_PATTERN} AND NOT {held_raw}) l LEFT JOIN {table} d ON CAST(d."cluster" AS VARCHAR) = l."cluster" AND d."pattern_id" = l."pid""#,
                held_raw = in_ranges(r#""timestamp""#, &covered),
                filters = self.raw_filters,
            ));
        }
        let last_seen = if self.last_seen {
            r#", max("last_seen") AS "last_seen""#
        } else {
            ""
        };
        format!(
            r#"SELECT sum("lines") AS "lines", round(100.0 * sum("lines") / sum(sum("lines")) OVER (), 1) AS "percent", "pattern", min("example") AS "example"{last_seen} FROM (
{}
) GROUP BY "pattern" ORDER BY "lines" DESC, "pattern" LIMIT {limit}"#,
            parts.join("\nUNION ALL\n"),
            limit = self.limit,
        )
    }
}

/// `values` as a list of SQL strings: `'a', 'b'`.
pub(crate) fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
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
