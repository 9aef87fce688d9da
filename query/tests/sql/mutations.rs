//! Mutation tests: damaged Parquet files (a byte changed in the footer or in a data page) and
//! damaged Delta commits (bytes changed, cut short, emptied) read through `query`. Each case must
//! end with an answer (exit 0) or a clear error naming the damaged file (exit 1), never a panic,
//! a crash or an unbounded message.
//!
//! Seeded and bounded: `MUTATION_SEED` picks the cases (default: a new seed each run, printed on
//! failure so the case is reproduced with `MUTATION_SEED=<seed>`), `MUTATION_CASES` how many
//! (default 60 of each kind, a few seconds each in a debug build). `bench/mutations.sh` runs the
//! same mutators for longer.

use crate::fixtures::{query, records, write_delta};
use logrecord::{LogRecord, Uuid};
use std::path::Path;

/// The longest error `query` may print (its bound, plus the `query: ` prefix and a newline).
const MAX_ERROR_BYTES: usize = 4096 + 64;

fn case_count() -> usize {
    testkit::mutation::cases(60)
}

/// Rows with every column set, text that varies (dictionary and plain pages) and JSON fields.
fn varied_records() -> Vec<LogRecord> {
    let mut rows = records();
    for (i, row) in rows.iter_mut().enumerate() {
        row.message = format!("request {} served for caller {}", i % 7, i * 31);
        row.fields =
            serde_json::from_str(&format!(r#"{{"attempt":{i},"note":"n{}"}}"#, i % 5)).unwrap();
        row.id = Uuid::from_u64_pair(9, i as u64);
    }
    rows
}

/// What one damaged store did to `query`: panics, crashes and unnamed errors are failures.
fn check(outcome: &std::process::Output, file_name: &str, case: &str, seed: u64) {
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    let code = outcome.status.code();
    let failed = |why: &str| -> ! {
        panic!("{why} ({case}; reproduce with MUTATION_SEED={seed}): exit {code:?}: {stderr}")
    };
    match code {
        Some(0) => {}
        Some(1) => {
            if !stderr.contains(file_name) {
                failed("the error does not name the damaged file");
            }
            if stderr.len() > MAX_ERROR_BYTES {
                failed("the error is longer than its bound");
            }
        }
        _ => failed("query crashed"),
    }
    for sign in [
        "panicked",
        "Join Error",
        "stack backtrace",
        "RUST_BACKTRACE",
    ] {
        if stderr.contains(sign) {
            failed("a panic reached the user");
        }
    }
}

const EVERY_COLUMN: &str = "SELECT count(*), count(DISTINCT id), max(message), min(path), \
     max(fields), sum(latency_us), max(status), min(\"timestamp\"), max(request_id) FROM logs";

#[test]
fn damaged_parquet_files_are_errors_naming_the_file() {
    let mut cases = testkit::mutation::Seeded::from_env();
    let seed = cases.seed();
    let template = tempfile::tempdir().unwrap();
    let file = template.path().join("date=2026-01-01/hour=00/m1.parquet");
    let mut rows = varied_records();
    logrecord::parquet_file::write(&file, &mut rows).unwrap();
    let original = std::fs::read(&file).unwrap();
    let metadata_len = u32::from_le_bytes(
        original[original.len() - 8..original.len() - 4]
            .try_into()
            .unwrap(),
    ) as usize;
    let footer_start = original.len() - 8 - metadata_len;
    for i in 0..case_count() * 2 {
        let mut damaged = original.clone();
        // Half in the footer (metadata, its length, the magic), half in the data pages.
        let (region, at) = if i % 2 == 0 {
            (
                "footer",
                footer_start + cases.below(original.len() - footer_start),
            )
        } else {
            ("data page", 4 + cases.below(footer_start - 4))
        };
        let byte = cases.byte();
        damaged[at] = if damaged[at] == byte { !byte } else { byte };
        let store = tempfile::tempdir().unwrap();
        let path = store.path().join("date=2026-01-01/hour=00/m1.parquet");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &damaged).unwrap();
        let outcome = query(store.path(), &["--format", "csv", EVERY_COLUMN]);
        check(
            &outcome,
            "m1.parquet",
            &format!("{region} byte {at} set to {byte}"),
            seed,
        );
    }
}

#[test]
fn damaged_delta_commits_are_errors_never_panics() {
    let mut cases = testkit::mutation::Seeded::from_env();
    let seed = cases.seed();
    let template = tempfile::tempdir().unwrap();
    write_delta(template.path(), &varied_records(), 2);
    let commit = template.path().join("_delta_log/00000000000000000001.json");
    let original = std::fs::read(&commit).unwrap();
    for i in 0..case_count() {
        let mut damaged = original.clone();
        let what = match i % 4 {
            // Cut short: a writer stopped mid-write.
            0 => {
                let keep = cases.below(damaged.len());
                damaged.truncate(keep);
                format!("cut to {keep} bytes")
            }
            // Emptied.
            1 => {
                damaged.clear();
                "emptied".to_owned()
            }
            // A byte changed.
            2 => {
                let at = cases.below(damaged.len());
                damaged[at] = cases.byte();
                format!("byte {at} changed")
            }
            // A span repeated: nesting and long values, the input an error might quote.
            _ => {
                let at = cases.below(damaged.len());
                let span = damaged[at..(at + 64).min(damaged.len())].to_vec();
                for _ in 0..2000 {
                    damaged.splice(at..at, span.iter().copied());
                }
                format!("64 bytes at {at} repeated 2000 times")
            }
        };
        let store = tempfile::tempdir().unwrap();
        copy_dir(template.path(), store.path());
        std::fs::write(
            store.path().join("_delta_log/00000000000000000001.json"),
            &damaged,
        )
        .unwrap();
        let outcome = query(store.path(), &["--format", "csv", EVERY_COLUMN]);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        // The Delta log is read as a whole: its errors name the table or the commit.
        let table = store
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let named = stderr.contains("_delta_log") || stderr.contains(&table);
        if outcome.status.code() == Some(1) && !named {
            panic!(
                "the error names neither the table nor the commit ({what}; MUTATION_SEED={seed}): {stderr}"
            );
        }
        check(&outcome, "", &what, seed);
        if i % 4 == 1 {
            assert!(
                stderr.contains("00000000000000000001.json: the Delta commit is empty (0 bytes)"),
                "{stderr}"
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
