//! Pattern ids against the raw rows: every warning and error has one and no request event has
//! one, the dictionary's counts add up to `hourly_by_pattern`, ids do not move when an hour is
//! built again (late rows, killed runs, two builds at once), and two compactors working on
//! copies of one table write the same dictionary and ids.

use super::tests::{assert_exact, far_future, lines, nothing_built, records, warm_table};
use super::*;
use ::patterns::{Dictionary, Settings};
use datafusion::prelude::SessionContext;
use std::path::Path;
use std::time::Duration;

async fn build(url: &Url) -> BuildReport {
    build_closed_hours(url, far_future(), DEFAULT_TOP_VALUES)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A session with the raw table as `raw`, `hourly_by_pattern` as `by_pattern` and the
/// dictionary as `dictionary`.
async fn session(url: &Url) -> SessionContext {
    let ctx = SessionContext::new();
    let by_pattern = ROLLUPS
        .iter()
        .find(|r| r.name == patterns::BY_PATTERN)
        .unwrap_or_else(|| panic!("no pattern rollup"))
        .location(url)
        .unwrap_or_else(|e| panic!("{e}"));
    let dictionary = patterns::dictionary_location(url).unwrap_or_else(|e| panic!("{e}"));
    for (name, location) in [
        ("raw", url.clone()),
        ("by_pattern", by_pattern),
        ("dictionary", dictionary),
    ] {
        let table = crate::open(&location)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        table
            .update_datafusion_session(&ctx.state())
            .unwrap_or_else(|e| panic!("{e}"));
        ctx.register_table(
            name,
            table
                .table_provider()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    ctx
}

const IDS_BY_HOUR: &str = "SELECT CAST(date AS VARCHAR) AS d, CAST(hour AS VARCHAR) AS h, \
    CAST(cluster AS VARCHAR) AS c, level, pattern_id, rows FROM by_pattern \
    ORDER BY d, h, c, level, pattern_id";
const DICTIONARY: &str = "SELECT CAST(cluster AS VARCHAR) AS c, pattern_id, template, example, \
    lines, CAST(first_seen AS VARCHAR) AS first, CAST(last_seen AS VARCHAR) AS last \
    FROM dictionary ORDER BY c, pattern_id";

#[tokio::test]
async fn every_warning_and_error_has_an_id_and_the_dictionary_adds_up() {
    let (_dir, url) = warm_table(&mut records(0, 10, 150, 7)).await;
    let report = build(&url).await;
    let ctx = session(&url).await;
    assert_eq!(
        lines(
            &ctx,
            "SELECT level, pattern_id IS NOT NULL AS has_id, sum(\"rows\") AS n FROM by_pattern \
             GROUP BY 1, 2 ORDER BY 1, 2"
        )
        .await,
        lines(
            &ctx,
            "SELECT level, path IS NULL AS has_id, count(*) AS n FROM raw GROUP BY 1, 2 ORDER BY 1, 2"
        )
        .await
    );
    // The fixture's four message shapes, in each of the three clusters: ids 1 to 4 each.
    let templates = lines(
        &ctx,
        "SELECT DISTINCT template FROM dictionary ORDER BY template",
    )
    .await;
    assert_eq!(
        templates[3..7],
        [
            "| cache for host-<*> expired after <*> ms |",
            "| disk <*> is <*> full                    |",
            "| token refresh failed                    |",
            "| upstream refused: code <*>              |",
        ],
        "{templates:#?}"
    );
    assert_eq!(
        lines(
            &ctx,
            "SELECT count(*) AS n, max(pattern_id) AS top FROM dictionary"
        )
        .await[3],
        "| 12 | 4   |"
    );
    assert_eq!(report.patterns.held, 12);
    // Each cluster's four, first seen in the first hour, with their final templates.
    assert_eq!(report.patterns.new.len(), 12, "{:#?}", report.patterns.new);
    for new in &report.patterns.new {
        assert_eq!(new.first_seen.format("%H").to_string(), "00", "{new:?}");
        assert!(
            templates.iter().any(|t| t.contains(&new.template)),
            "{new:?}"
        );
        assert!(["WARN", "ERROR"].contains(&new.level.as_str()), "{new:?}");
    }
    // Lines with ids, per cluster and level: every warning and error of the table.
    let lines_total: i64 = report.patterns.lines.values().sum();
    assert_eq!(
        lines(&ctx, "SELECT count(*) AS n FROM raw WHERE path IS NULL").await[3],
        format!("| {lines_total:<3} |")
    );
    // Each template's lines, first and last seen are its hours' in the rollup.
    assert_eq!(
        lines(
            &ctx,
            "SELECT CAST(cluster AS VARCHAR) AS c, pattern_id, lines, CAST(first_seen AS VARCHAR) AS f, \
             CAST(last_seen AS VARCHAR) AS l FROM dictionary ORDER BY c, pattern_id"
        )
        .await,
        lines(
            &ctx,
            "SELECT CAST(cluster AS VARCHAR) AS c, pattern_id, sum(\"rows\") AS lines, \
             CAST(min(first_seen) AS VARCHAR) AS f, CAST(max(last_seen) AS VARCHAR) AS l \
             FROM by_pattern WHERE pattern_id IS NOT NULL GROUP BY 1, 2 ORDER BY c, pattern_id"
        )
        .await
    );
    // Each example is a line of its template.
    let batches = ctx
        .sql("SELECT template, example FROM dictionary")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for batch in &batches {
        use arrow::array::AsArray;
        let text = |index: usize| {
            arrow::compute::cast(batch.column(index), &arrow::datatypes::DataType::Utf8)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (templates, examples) = (text(0), text(1));
        let (templates, examples) = (templates.as_string::<i32>(), examples.as_string::<i32>());
        for row in 0..batch.num_rows() {
            let mut one = Dictionary::new(Settings::for_logs());
            one.insert(7, templates.value(row));
            assert_eq!(one.id_of(examples.value(row)), Some(7), "{batch:?}");
        }
    }
    assert_eq!(build(&url).await, nothing_built(12));
}

#[tokio::test]
async fn ids_stay_when_hours_are_built_again_after_late_rows_killed_runs_and_two_at_once() {
    let (_dir, url) = warm_table(&mut records(0, 8, 120, 9)).await;
    build(&url).await;
    let ctx = session(&url).await;
    let before = lines(&ctx, IDS_BY_HOUR).await;
    let dictionary_before = lines(&ctx, "SELECT CAST(cluster AS VARCHAR) AS c, pattern_id, template FROM dictionary ORDER BY c, pattern_id").await;
    // Late rows for hour 3, with a message shape never seen.
    let mut late = records(3, 1, 40, 10);
    for record in late.iter_mut().filter(|r| r.path.is_none()).step_by(2) {
        record.message = format!("replica {} lost its lease", record.seq);
    }
    crate::write_records(&url, &mut late)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    for millis in [1u64, 5, 20, 50, 100, 200, 400] {
        let _ = tokio::time::timeout(Duration::from_millis(millis), build(&url)).await;
    }
    let (first, second) = tokio::join!(
        build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES),
        build_closed_hours(&url, far_future(), DEFAULT_TOP_VALUES)
    );
    assert!(first.is_ok() || second.is_ok(), "{first:?} {second:?}");
    build(&url).await;
    assert_exact(&url).await;
    let ctx = session(&url).await;
    let after = lines(&ctx, IDS_BY_HOUR).await;
    // Every other hour's ids are as they were; hour 3 only gained rows.
    let other_hours = |rows: &[String]| -> Vec<String> {
        rows.iter()
            .filter(|row| !row.contains("| 03 |"))
            .cloned()
            .collect()
    };
    assert_eq!(other_hours(&after), other_hours(&before));
    // The old templates keep their ids; the new shape got the next id in each cluster it hit.
    let dictionary_after = lines(&ctx, "SELECT CAST(cluster AS VARCHAR) AS c, pattern_id, template FROM dictionary ORDER BY c, pattern_id").await;
    for row in &dictionary_before[3..dictionary_before.len() - 1] {
        assert!(
            dictionary_after.contains(row),
            "{row} lost: {dictionary_after:#?}"
        );
    }
    let new: Vec<&String> = dictionary_after
        .iter()
        .filter(|row| row.contains("replica <*> lost its lease"))
        .collect();
    assert!(!new.is_empty(), "{dictionary_after:#?}");
    assert!(
        new.iter().all(|row| row.contains("| 5          |")),
        "{new:#?}"
    );
    assert_eq!(
        lines(&ctx, "SELECT sum(lines) AS n FROM dictionary").await,
        lines(&ctx, "SELECT count(*) AS n FROM raw WHERE path IS NULL").await
    );
}

#[tokio::test]
async fn two_compactors_on_copies_of_one_table_write_the_same_ids() {
    let (dir, url) = warm_table(&mut records(0, 6, 100, 11)).await;
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    copy_dir(dir.path(), copy.path());
    let copy_url = Url::from_directory_path(copy.path()).unwrap_or_else(|()| panic!("a directory"));
    build(&url).await;
    build(&copy_url).await;
    let (ctx, copy_ctx) = (session(&url).await, session(&copy_url).await);
    assert_eq!(
        lines(&ctx, IDS_BY_HOUR).await,
        lines(&copy_ctx, IDS_BY_HOUR).await
    );
    assert_eq!(
        lines(&ctx, DICTIONARY).await,
        lines(&copy_ctx, DICTIONARY).await
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap_or_else(|e| panic!("{e}"));
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[tokio::test]
async fn a_pattern_is_new_when_first_mined_or_unseen_for_the_novelty_days() {
    let (_dir, url) = warm_table(&mut records(0, 2, 100, 12)).await;
    assert_eq!(build(&url).await.patterns.new.len(), 12);
    // Three days later the same shapes: not new. Late rows for an hour already built: their
    // lines only are counted.
    crate::write_records(&url, &mut records(72, 1, 100, 13))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut late = records(1, 1, 30, 14);
    crate::write_records(&url, &mut late)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = build(&url).await;
    assert_eq!(report.patterns.new, []);
    let ctx = session(&url).await;
    let counted: i64 = report.patterns.lines.values().sum();
    let expected = late.iter().filter(|r| r.path.is_none()).count() as i64
        + lines(
            &ctx,
            "SELECT count(*) AS n FROM raw WHERE path IS NULL AND date = '2026-03-04'",
        )
        .await[3]
            .trim_matches(|c| c == '|' || c == ' ')
            .parse::<i64>()
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counted, expected, "{:?}", report.patterns.lines);
    // Eleven days after that: new again, each cluster's four.
    crate::write_records(&url, &mut records(72 + 11 * 24, 1, 100, 15))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = build(&url).await;
    assert_eq!(report.patterns.new.len(), 12, "{:#?}", report.patterns.new);
    assert!(
        report
            .patterns
            .new
            .iter()
            .all(|new| new.first_seen.format("%Y-%m-%d").to_string() == "2026-03-15"),
        "{:#?}",
        report.patterns.new
    );
}
