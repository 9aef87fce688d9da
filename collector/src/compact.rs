//! `collector compact`: merges each closed hour's small files into one file per partition
//! directory (`date=/hour=/cluster=`), safely while collectors write and queries read.
//!
//! Read safety comes from the manifest contract in `logrecord::compaction`: the merged file is
//! renamed in as `compacted-<id>.parquet` (not data until committed), then the directory's
//! `_compaction.json` is atomically replaced to name it and the files it replaces (the commit).
//! Replaced files are deleted by a later run once `--grace` has passed, so a query that listed them
//! just before the commit can still read them. A crash at any point leaves either the inputs or
//! the merged file visible; an uncommitted merged file is removed by a later run.
//!
//! Only files the collector has committed are merged (their last offset is below the partition's
//! stored next offset): a batch a crashed collector left half published is never folded in.
//! One compactor at a time per store (a lock file); collectors keep writing meanwhile (files they
//! add after the listing are simply not inputs).

use crate::state::{PartitionState, write_atomically};
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use logrecord::LogRecord;
use logrecord::compaction::{
    COMPACTED_PREFIX, MANIFEST, Manifest, Replaced, is_internal, is_visible,
};
use logrecord::parquet_file::{StagingWriter, TEMP_PREFIX};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to compact and when replaced files may go.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub out: PathBuf,
    /// An hour is compacted once it ended at least this long ago (late events still arrive for a
    /// while after an hour ends; compacting again later is fine, only less efficient).
    pub min_age: Duration,
    /// Replaced and uncommitted files are deleted once this old.
    pub grace: Duration,
    pub now: DateTime<Utc>,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    pub directories_compacted: usize,
    pub files_merged: usize,
    pub rows: u64,
    pub files_deleted: usize,
}

/// Rows read and merged per write: one row group each.
const CHUNK_ROWS: usize = logrecord::parquet_file::ROW_GROUP_ROWS;

pub fn run(options: &CompactOptions) -> anyhow::Result<CompactReport> {
    let lock_path = options.out.join("_collector").join("compact.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap_or(&options.out))
        .with_context(|| format!("creating {}", lock_path.display()))?;
    let lock = File::create(&lock_path).with_context(|| lock_path.display().to_string())?;
    if lock.try_lock().is_err() {
        bail!(
            "another `collector compact` is running on {}",
            options.out.display()
        );
    }
    let committed = committed_offsets(&options.out)?;
    let mut report = CompactReport::default();
    for dir in partition_dirs(&options.out)? {
        compact_dir(&dir, &committed, options, &mut report)
            .with_context(|| format!("compacting {}", dir.display()))?;
    }
    Ok(report)
}

/// `(topic, partition) -> next offset` from every partition state in the store.
fn committed_offsets(out: &Path) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut committed = BTreeMap::new();
    let Ok(topics) = std::fs::read_dir(out.join("_collector")) else {
        return Ok(committed);
    };
    for topic in topics.flatten().filter(|e| e.path().is_dir()) {
        let name = topic.file_name().to_string_lossy().into_owned();
        for state in std::fs::read_dir(topic.path())?.flatten() {
            let file = state.file_name().to_string_lossy().into_owned();
            let Some(partition) = file.strip_suffix(".json").and_then(|p| p.parse().ok()) else {
                continue; // intents and anything else
            };
            let state: PartitionState = serde_json::from_slice(&std::fs::read(state.path())?)
                .with_context(|| state.path().display().to_string())?;
            committed.insert((name.clone(), partition), state.next_offset);
        }
    }
    Ok(committed)
}

/// Every `date=/hour=/cluster=` directory of the store.
fn partition_dirs(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let children = |dir: &Path, prefix: &str| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        found
    };
    let mut dirs = Vec::new();
    for date in children(out, "date=") {
        for hour in children(&date, "hour=") {
            dirs.extend(children(&hour, "cluster="));
        }
    }
    Ok(dirs)
}

/// When the hour of a `date=/hour=/cluster=` directory ends.
fn hour_end(dir: &Path) -> Option<DateTime<Utc>> {
    let hour_dir = dir.parent()?;
    let hour: u32 = hour_dir
        .file_name()?
        .to_str()?
        .strip_prefix("hour=")?
        .parse()
        .ok()?;
    let date = hour_dir
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("date=")?;
    let start = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(hour, 0, 0)?;
    Some(start.and_utc() + chrono::Duration::hours(1))
}

/// Whether a collector file (`<topic>-<partition>-<first>-<last>.parquet`) is committed.
fn is_committed(name: &str, committed: &BTreeMap<(String, i32), i64>) -> bool {
    let parse = || -> Option<(String, i32, i64)> {
        let stem = name.strip_suffix(".parquet")?;
        let (rest, last) = stem.rsplit_once('-')?;
        let (rest, _first) = rest.rsplit_once('-')?;
        let (topic, partition) = rest.rsplit_once('-')?;
        Some((
            topic.to_owned(),
            partition.parse().ok()?,
            last.parse().ok()?,
        ))
    };
    parse().is_some_and(|(topic, partition, last)| {
        committed
            .get(&(topic, partition))
            .is_some_and(|next| last < *next)
    })
}

fn compact_dir(
    dir: &Path,
    committed: &BTreeMap<(String, i32), i64>,
    options: &CompactOptions,
    report: &mut CompactReport,
) -> anyhow::Result<()> {
    let mut manifest = Manifest::load(dir)?;
    delete_expired(dir, &mut manifest, options, report)?;
    let names = data_names(dir)?;

    let closed = hour_end(dir).is_some_and(|end| {
        end + chrono::Duration::from_std(options.min_age).unwrap_or_default() <= options.now
    });
    if !closed {
        return Ok(());
    }
    let inputs: Vec<String> = names
        .iter()
        .filter(|n| is_visible(manifest.as_ref(), n))
        .filter(|n| manifest.as_ref().is_some_and(|m| &m.file == *n) || is_committed(n, committed))
        .cloned()
        .collect();
    if inputs.len() < 2 {
        return Ok(());
    }

    let merged = format!("{COMPACTED_PREFIX}{}.parquet", uuid::Uuid::now_v7());
    let rows = merge(dir, &inputs, &dir.join(&merged))?;
    let mut replaces = manifest.map(|m| m.replaces).unwrap_or_default();
    // The grace period counts from the commit, not from the start of the run.
    let committed_at = Utc::now();
    replaces.extend(inputs.iter().map(|name| Replaced {
        name: name.clone(),
        since: committed_at,
    }));
    let next = Manifest {
        file: merged,
        rows,
        replaces,
    };
    // The commit point: from here readers see the merged file instead of its inputs.
    write_atomically(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&next)?)?;
    tracing::info!(dir = %dir.display(), files = inputs.len(), rows, "compacted");
    report.directories_compacted += 1;
    report.files_merged += inputs.len();
    report.rows += rows;
    Ok(())
}

/// The directory's Parquet file names (not hidden, not internal).
fn data_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet") && !is_internal(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Deletes replaced files past the grace period (then drops them from the manifest), and merged
/// files a crashed run never committed.
fn delete_expired(
    dir: &Path,
    manifest: &mut Option<Manifest>,
    options: &CompactOptions,
    report: &mut CompactReport,
) -> anyhow::Result<()> {
    let grace = chrono::Duration::from_std(options.grace).unwrap_or_default();
    if let Some(m) = manifest.as_mut() {
        let (expired, kept): (Vec<Replaced>, Vec<Replaced>) = m
            .replaces
            .drain(..)
            .partition(|r| r.since + grace <= options.now);
        m.replaces = kept;
        if !expired.is_empty() {
            // Delete first, then drop the names from the manifest: in between, a deleted name is
            // still listed as replaced (harmless); the other order would make the files data
            // again for a moment, duplicating their rows.
            for replaced in &expired {
                remove(&dir.join(&replaced.name), report)?;
            }
            write_atomically(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&*m)?)?;
        }
    }
    let old = |name: &str| {
        std::fs::metadata(dir.join(name))
            .and_then(|m| m.modified())
            .map(|t| DateTime::<Utc>::from(t) + grace <= options.now)
            .unwrap_or(false)
    };
    for name in data_names(dir)?
        .iter()
        .filter(|n| n.starts_with(COMPACTED_PREFIX))
    {
        let referenced = manifest
            .as_ref()
            .is_some_and(|m| &m.file == name || m.replaces(name));
        if !referenced && old(name) {
            remove(&dir.join(name), report)?;
        }
    }
    // Temporaries of a writer that died (a killed compactor; collectors clean their own at start).
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) && old(&name) {
            remove(&entry.path(), report)?;
        }
    }
    Ok(())
}

fn remove(path: &Path, report: &mut CompactReport) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            report.files_deleted += 1;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("removing {}: {e}", path.display())),
    }
}

/// Merges sorted input files into one file sorted by (timestamp, machine, seq), streaming: at
/// most one chunk per input and one output chunk are in memory. Returns the rows written, which
/// must equal the inputs' footers' sum.
fn merge(dir: &Path, inputs: &[String], target: &Path) -> anyhow::Result<u64> {
    let mut readers = Vec::new();
    let mut expected = 0u64;
    for name in inputs {
        let path = dir.join(name);
        let builder = ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).with_context(|| path.display().to_string())?,
        )
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
        expected += builder.metadata().file_metadata().num_rows() as u64;
        readers.push(SortedInput::new(builder.with_batch_size(8192).build()?));
    }
    let mut heap = BinaryHeap::new();
    for (index, reader) in readers.iter_mut().enumerate() {
        if let Some(record) = reader.next()? {
            heap.push(Reverse(Keyed::new(record, index)));
        }
    }
    let mut writer = StagingWriter::create(target)?;
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut written = 0u64;
    while let Some(Reverse(Keyed { record, index, .. })) = heap.pop() {
        chunk.push(record);
        if let Some(next) = readers[index].next()? {
            heap.push(Reverse(Keyed::new(next, index)));
        }
        if chunk.len() == CHUNK_ROWS {
            written += chunk.len() as u64;
            writer.write(&mut chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        written += chunk.len() as u64;
        writer.write(&mut chunk)?;
    }
    if written != expected {
        bail!("merged {written} rows but the inputs hold {expected}");
    }
    writer.finish()?.publish()?;
    Ok(written)
}

/// One input file's records, in file order (files are written sorted).
struct SortedInput {
    reader: ParquetRecordBatchReader,
    buffered: std::vec::IntoIter<LogRecord>,
}

impl SortedInput {
    fn new(reader: ParquetRecordBatchReader) -> Self {
        SortedInput {
            reader,
            buffered: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> anyhow::Result<Option<LogRecord>> {
        loop {
            if let Some(record) = self.buffered.next() {
                return Ok(Some(record));
            }
            match self.reader.next() {
                Some(batch) => {
                    self.buffered = logrecord::from_record_batch(&batch?)?.into_iter();
                }
                None => return Ok(None),
            }
        }
    }
}

/// A record ordered by the store's sort key, then by input (stable across inputs).
struct Keyed {
    key: (i64, String, u64, usize),
    record: LogRecord,
    index: usize,
}

impl Keyed {
    fn new(record: LogRecord, index: usize) -> Self {
        Keyed {
            key: (
                record.timestamp.timestamp_micros(),
                record.machine.clone(),
                record.seq,
                index,
            ),
            record,
            index,
        }
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crafted_or_empty_input_is_an_error_naming_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut crafted = b"PAR1".to_vec();
        crafted.extend_from_slice(&[0; 64]);
        crafted.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        crafted.extend_from_slice(b"PAR1");
        std::fs::write(dir.path().join("crafted.parquet"), crafted).unwrap();
        std::fs::write(dir.path().join("empty.parquet"), b"").unwrap();
        let target = dir.path().join("merged.parquet");
        for (name, why) in [
            ("crafted.parquet", "Size is 76 but need 4294967288"),
            ("empty.parquet", "Size is 0 but need 8"),
        ] {
            let error = merge(dir.path(), &[name.to_owned()], &target).unwrap_err();
            let text = format!("{error:#}");
            assert!(
                text.contains(&format!("{name}: not a readable Parquet file")),
                "{text}"
            );
            assert!(text.contains(why), "{text}");
            assert!(!target.exists());
        }
    }
}
